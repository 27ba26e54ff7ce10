"""The reads a sync needs from the portal, batched (docs/protocol.md §5: one ``batch`` request is one
unit of the rate budget and carries up to 50 calls), with short Redis caches for what changes
rarely: task details and user names. The result list is never cached: it is the truth we diff.

A sync of N due tasks costs ⌈N/50⌉ requests for the result lists, plus — only when something is
worth telling — one more request per 50 task details and people not in the cache. A small sync
fills its batch's spare slots with its tasks' details (read afresh: who the task's people are now,
who closed it), so the usual alert (its people already known) costs no second request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

from redis import Redis

from b24notify.keys import Keys
from b24notify.people import Person, parse_user
from b24notify.rest.client import MAX_BATCH, Answer, RestClient
from b24notify.rest.errors import B24Error, TaskGone
from b24notify.results import MalformedResult, ResultList, parse_results
from b24notify.task_info import MalformedTask, TaskInfo, parse_task

log = logging.getLogger(__name__)

TASK_FIELDS = ["ID", "TITLE", "RESPONSIBLE_ID", "GROUP_ID", "STATUS", "CREATED_BY", "ACCOMPLICES", "AUDITORS",
               "CLOSED_BY"]
# A results batch for fewer tasks than this also carries their task details that are not cached:
# the spare slots are free (one request either way), and an alert then needs no second request
# for them. Big batches (bursts, reconciliation) keep every slot for result lists.
PREFETCH_BELOW = 25
# A confused portal cannot make us page for ever. Reaching it is logged and the list is marked
# incomplete (``ResultList.complete``): results past it are unknown, never taken for removed.
MAX_RESULT_PAGES = 20


@dataclass(frozen=True)
class Details:
    tasks: dict[int, TaskInfo | B24Error | MalformedTask]
    people: dict[int, Person | B24Error]  # an error: user.get failed for them (retried with the task)

    def name(self, user_id: int) -> str:
        person = self.people.get(user_id)
        return person.name if isinstance(person, Person) else ""


Call = tuple[str, tuple[str, Mapping[str, Any]]]


def _chunks(items: Sequence[Call], size: int = MAX_BATCH) -> Iterator[dict[str, tuple[str, Mapping[str, Any]]]]:
    for start in range(0, len(items), size):
        yield dict(items[start:start + size])


class PortalReads:
    def __init__(self, client: RestClient, redis: Redis, keys: Keys, *, task_ttl: int, user_ttl: int,
                 zone: tzinfo = UTC) -> None:
        self.client = client
        self.redis = redis
        self.keys = keys
        self.task_ttl = task_ttl
        self.user_ttl = user_ttl
        self.zone = zone  # the portal's time zone, for a time it sends without an offset
        self._read_now: dict[int, TaskInfo] = {}  # task details read with this job's result lists

    @property
    def portal(self) -> str:
        return self.client.portal

    def results(self, task_ids: Iterable[int]) -> dict[int, ResultList | B24Error | MalformedResult]:
        """Every task's result list, or the error that task's call got. Raises B24Error when the
        batch request as a whole failed (auth, rate limit, outage): that concerns every task."""
        calls: list[Call] = [(f"r{task_id}", ("tasks.task.result.list", {"taskId": task_id})) for task_id in task_ids]
        found: dict[int, ResultList | B24Error | MalformedResult] = {}
        self._read_now = {}
        for chunk in _chunks(calls):
            if len(chunk) < PREFETCH_BELOW:
                chunk.update(self._prefetch([int(key[1:]) for key in chunk]))
            pipe = self.redis.pipeline(transaction=False)
            for key, answer in self.client.batch(chunk).items():
                task_id = int(key[1:])
                if key.startswith("t"):
                    info = self._task(task_id, answer)
                    if isinstance(info, TaskInfo):
                        self._read_now[task_id] = info
                        if self.task_ttl:
                            pipe.set(self.keys.task_cache(self.portal, task_id), info.to_json(), ex=self.task_ttl)
                    continue  # an error here is met again, and handled, by details()
                found[task_id] = answer if isinstance(answer, B24Error) else self._all_pages(task_id, answer)
            pipe.execute()
        return found

    @staticmethod
    def _prefetch(task_ids: list[int]) -> dict[str, tuple[str, Mapping[str, Any]]]:
        # Cached or not: in a small batch the slots are free, and the task's people and CLOSED_BY
        # are then as of this very read (a result closes when its task is completed).
        return {f"t{t}": ("tasks.task.get", {"taskId": t, "select": TASK_FIELDS}) for t in task_ids}

    def _all_pages(self, task_id: int, first: Answer) -> ResultList | B24Error | MalformedResult:
        # docs/protocol.md §3: the source returns every row; the docs hint at pages of 50. Follow
        # `next` if it ever appears.
        try:
            results = parse_results(first.result, self.zone)
            start, pages = first.next, 1
            while start is not None and pages < MAX_RESULT_PAGES:
                page = self.client.call_page("tasks.task.result.list", {"taskId": task_id, "start": start})
                results.extend(parse_results(page.result, self.zone))
                start, pages = page.next, pages + 1
        except B24Error as exc:
            return exc
        except MalformedResult as exc:
            return exc
        if start is not None:
            log.warning("event=sync.result_list_truncated portal=%s task=%d pages=%d results=%d next=%s",
                        self.portal, task_id, pages, len(results), start)
            return ResultList(tuple(results), complete=False)
        return ResultList(tuple(results))

    def details(self, task_ids: Iterable[int], user_ids: Iterable[int], *,
                fresh: Iterable[int] = ()) -> Details:
        """Task details and people (name, e-mail, active), from the cache or one batch for what is
        missing. ``fresh``: tasks to read again even when cached (a task just closed: who closed it)."""
        tasks: dict[int, TaskInfo | B24Error | MalformedTask] = {}
        wanted_tasks = sorted(set(task_ids))
        again = set(fresh)
        for task_id in wanted_tasks:
            if task_id in self._read_now:
                tasks[task_id] = self._read_now[task_id]
        rest = [t for t in wanted_tasks if t not in tasks]
        cached = self.redis.mget([self.keys.task_cache(self.portal, t) for t in rest]) if rest else []
        for task_id, raw in zip(rest, cached, strict=True):
            if raw is not None and task_id not in again:
                tasks[task_id] = TaskInfo.from_json(raw)
        calls: list[Call] = [(f"t{t}", ("tasks.task.get", {"taskId": t, "select": TASK_FIELDS}))
                             for t in wanted_tasks if t not in tasks]
        people = self._cached_people(user_ids)
        calls += self._user_calls(user_ids, people)
        self._run(calls, tasks, people)
        return Details(tasks, people)

    def read_now(self, task_id: int) -> TaskInfo | None:
        """The task's details when they came with this job's result lists."""
        return self._read_now.get(task_id)

    def people(self, user_ids: Iterable[int]) -> dict[int, Person | B24Error]:
        """People from the cache, or one batch request (per 50) for those not in it."""
        found = self._cached_people(user_ids)
        self._run(self._user_calls(user_ids, found), {}, found)
        return found

    def _cached_people(self, user_ids: Iterable[int]) -> dict[int, Person | B24Error]:
        wanted = sorted({u for u in user_ids if u > 0})
        found: dict[int, Person | B24Error] = {}
        if not wanted:
            return found
        for user_id, raw in zip(wanted, self.redis.mget([self.keys.user_cache(self.portal, u) for u in wanted]),
                                strict=True):
            person = Person.from_json(raw) if raw is not None else None
            if person is not None:
                found[user_id] = person
        return found

    @staticmethod
    def _user_calls(user_ids: Iterable[int], known: Mapping[int, object]) -> list[Call]:
        # One documented `user.get {ID}` per unknown person (whether FILTER takes an ID list is
        # undocumented); people are cached for an hour (B24NOTIFY_USER_CACHE_SECONDS), so this is rare.
        return [(f"u{u}", ("user.get", {"ID": u})) for u in sorted({u for u in user_ids if u > 0}) if u not in known]

    def _run(self, calls: list[Call], tasks: dict[int, TaskInfo | B24Error | MalformedTask],
             people: dict[int, Person | B24Error]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for chunk in _chunks(calls):
            try:
                answers: dict[str, Answer | B24Error] = dict(self.client.batch(chunk))
            except B24Error as exc:
                answers = dict.fromkeys(chunk, exc)
            for key, answer in answers.items():
                ident = int(key[1:])
                if key.startswith("t"):
                    tasks[ident] = self._task(ident, answer)
                    info = tasks[ident]
                    if isinstance(info, TaskInfo) and self.task_ttl:
                        pipe.set(self.keys.task_cache(self.portal, ident), info.to_json(), ex=self.task_ttl)
                elif isinstance(answer, B24Error):
                    people[ident] = answer
                else:
                    person = parse_user(ident, answer.result)
                    people[ident] = person
                    pipe.set(self.keys.user_cache(self.portal, ident), person.to_json(), ex=self.user_ttl or None)
        pipe.execute()

    @staticmethod
    def _task(task_id: int, answer: Answer | B24Error) -> TaskInfo | B24Error | MalformedTask:
        if isinstance(answer, B24Error):
            return answer
        if answer.result in ([], None, ""):
            # tasks.task.get answers `[]` for a missing or hidden task (docs/protocol.md §4).
            return TaskGone("0", "tasks.task.get returned no task", method="tasks.task.get")
        try:
            return parse_task(answer.result)
        except MalformedTask as exc:
            return exc  # an answer we cannot read: a strike for its task (workers/parking.py)

    def forget_task(self, task_id: int) -> None:
        self.redis.delete(self.keys.task_cache(self.portal, task_id))
