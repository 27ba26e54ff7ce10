"""The reads a sync needs from the portal, batched (docs/protocol.md §5: one ``batch`` request is one
unit of the rate budget and carries up to 50 calls), with short Redis caches for what changes
rarely: task details and user names. The result list is never cached: it is the truth we diff.

A sync of N due tasks costs ⌈N/50⌉ requests for the result lists, plus — only when something is
worth telling — one more request per 50 task details and author names not in the cache. A small
sync fills its batch's spare slots with the task details it lacks, so the usual alert (an author
already known) costs no second request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

from redis import Redis

from b24notify.keys import Keys, as_text
from b24notify.rest.client import MAX_BATCH, Answer, RestClient
from b24notify.rest.errors import B24Error, TaskGone
from b24notify.results import MalformedResult, ResultList, parse_results
from b24notify.task_info import MalformedTask, TaskInfo, parse_task

log = logging.getLogger(__name__)

TASK_FIELDS = ["ID", "TITLE", "RESPONSIBLE_ID", "GROUP_ID", "STATUS", "CREATED_BY"]
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
    names: dict[int, str]


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

    @property
    def portal(self) -> str:
        return self.client.portal

    def results(self, task_ids: Iterable[int]) -> dict[int, ResultList | B24Error | MalformedResult]:
        """Every task's result list, or the error that task's call got. Raises B24Error when the
        batch request as a whole failed (auth, rate limit, outage): that concerns every task."""
        calls: list[Call] = [(f"r{task_id}", ("tasks.task.result.list", {"taskId": task_id})) for task_id in task_ids]
        found: dict[int, ResultList | B24Error | MalformedResult] = {}
        for chunk in _chunks(calls):
            chunk.update(self._prefetch([int(key[1:]) for key in chunk]) if len(chunk) < PREFETCH_BELOW else {})
            pipe = self.redis.pipeline(transaction=False)
            for key, answer in self.client.batch(chunk).items():
                task_id = int(key[1:])
                if key.startswith("t"):
                    info = self._task(task_id, answer)
                    if isinstance(info, TaskInfo) and self.task_ttl:
                        pipe.set(self.keys.task_cache(self.portal, task_id), info.to_json(), ex=self.task_ttl)
                    continue  # an error here is met again, and handled, by details()
                found[task_id] = answer if isinstance(answer, B24Error) else self._all_pages(task_id, answer)
            pipe.execute()
        return found

    def _prefetch(self, task_ids: list[int]) -> dict[str, tuple[str, Mapping[str, Any]]]:
        if not self.task_ttl or not task_ids:
            return {}
        cached = self.redis.mget([self.keys.task_cache(self.portal, t) for t in task_ids])
        return {f"t{t}": ("tasks.task.get", {"taskId": t, "select": TASK_FIELDS})
                for t, raw in zip(task_ids, cached, strict=True) if raw is None}

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

    def details(self, task_ids: Iterable[int], user_ids: Iterable[int]) -> Details:
        """Task details and author names, from the cache or one batch for what is missing."""
        tasks: dict[int, TaskInfo | B24Error | MalformedTask] = {}
        names: dict[int, str] = {}
        wanted_tasks = sorted(set(task_ids))
        wanted_users = sorted({u for u in user_ids if u > 0})
        cached = self.redis.mget(
            [self.keys.task_cache(self.portal, t) for t in wanted_tasks]
            + [self.keys.user_cache(self.portal, u) for u in wanted_users]
        ) if wanted_tasks or wanted_users else []
        for task_id, raw in zip(wanted_tasks, cached[: len(wanted_tasks)], strict=True):
            if raw is not None:
                tasks[task_id] = TaskInfo.from_json(raw)
        for user_id, raw in zip(wanted_users, cached[len(wanted_tasks):], strict=True):
            if raw is not None:
                names[user_id] = as_text(raw)
        calls: list[Call] = [(f"t{t}", ("tasks.task.get", {"taskId": t, "select": TASK_FIELDS}))
                 for t in wanted_tasks if t not in tasks]
        # One documented `user.get {ID}` per unknown author (whether FILTER takes an ID list is
        # undocumented); names are cached for an hour, so this is rare.
        calls += [(f"u{u}", ("user.get", {"ID": u})) for u in wanted_users if u not in names]
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
                else:
                    if isinstance(answer, B24Error):
                        continue  # an alert without the author's name beats no alert
                    names[ident] = _user_name(ident, answer.result)
                    pipe.set(self.keys.user_cache(self.portal, ident), names[ident], ex=self.user_ttl or None)
        pipe.execute()
        return Details(tasks, names)

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


def _user_name(user_id: int, rows: object) -> str:
    row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
    name = " ".join(p for p in (str(row.get("NAME") or ""), str(row.get("LAST_NAME") or "")) if p)
    # A missing user gets a stable placeholder (cached too, so it costs no call per alert).
    return name.strip() or f"user {user_id}"
