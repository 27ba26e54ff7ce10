"""Sync due tasks: fetch their results (batched), diff each against stored state, and commit each
task's new state together with the notifications it implies (the outbox), atomically.

Sending happens later, in delivery jobs that read the outbox: a crash after the commit loses
nothing, and a crash before it leaves the state untouched so the next run finds the same diff.

One task never fails the others: whatever goes wrong while one task is diffed or committed is that
task's failure alone (a retry with backoff and a strike), and the rest of its batch commits. A
task that keeps failing for a cause of its own is parked (``parking.py``) instead of looping.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from redis.exceptions import RedisError
from rq.timeouts import BaseTimeoutException

from b24notify.alerts import Alert
from b24notify.diff import ChangeKind, ResultChange, ResultDiff, StoredResult, diff_results
from b24notify.dueset import Claim
from b24notify.keys import as_text, split_task_member
from b24notify.notices import Notice
from b24notify.people import Person
from b24notify.portals.spec import HALT_ACTIONS
from b24notify.prefs import Prefs, PrefsStore
from b24notify.rest.client import RestClient
from b24notify.rest.errors import (
    B24Error,
    BudgetSpent,
    OperationTimeLimit,
    Policy,
    QueryLimitExceeded,
    ServerError,
)
from b24notify.rest.guard import QUERY_LIMIT_PENALTY_SECONDS
from b24notify.results import MalformedResult, ResultList, TaskResult
from b24notify.routing.recipients import people_needed, route
from b24notify.scripts import COMMIT_SYNC
from b24notify.settings import portal_zone
from b24notify.state_epoch import EPOCH_CHANGED, EXPIRY_SLACK_SECONDS
from b24notify.task_info import TaskInfo
from b24notify.trace import Step, add_steps, sync_step
from b24notify.workers.context import WorkerContext
from b24notify.workers.deliver import KEEP_FINISHED_SECONDS
from b24notify.workers.parking import Parking, describe, retry_delay
from b24notify.workers.portal_reads import Details, PortalReads

log = logging.getLogger(__name__)

HALT_SECONDS = 300.0  # how long a portal rests after a permanent error before one probe call
# A dropped task's state is kept this long as a tombstone: a task that comes back (access restored,
# restored from the recycle bin) resumes from it, so a result closed meanwhile is CLOSED, not taken
# for a NEW one already told. As long as a sent delivery is remembered: past that, nothing is lost
# by starting afresh (a result then comes back NEW, rendered as it is now).
GONE_STATE_SECONDS = KEEP_FINISHED_SECONDS
# Failures of the job as a whole, never of one task: they end the job, and its leases are reaped.
JOB_FAILURES = (RedisError, BaseTimeoutException)
RETRIED = frozenset({"retry", "failed", "halted"})  # sync outcomes whose task runs again later


@dataclass
class RequestCount:
    count: int = 0


@contextlib.contextmanager
def counted_requests(client: RestClient) -> Iterator[RequestCount]:
    """The HTTP requests this thread sends to the portal while the block runs (a batch of 50
    calls is one), for the trace. The dispatcher's reconciliation shares the client from its own
    thread: its requests are not counted here."""
    sent = RequestCount()
    thread = threading.get_ident()

    def count(request: httpx.Request) -> None:
        if threading.get_ident() == thread:
            sent.count += 1

    http = client._http  # the client's own httpx.Client: each request it sends passes its hooks
    hooks = http.event_hooks
    http.event_hooks = {**hooks, "request": [*hooks.get("request", []), count]}
    try:
        yield sent
    finally:
        hooks = http.event_hooks
        http.event_hooks = {**hooks, "request": [h for h in hooks.get("request", []) if h is not count]}


@dataclass
class SyncOutcome:
    task_id: int
    status: str  # synced | dropped | retry | failed | parked | halted | rejected | stale
    diff: ResultDiff | None = None
    queued: int = 0
    detail: str = ""
    alerts: list[Alert] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)  # what it queued: the alerts, routed


@dataclass
class _Pending:
    claim: Claim
    task_id: int
    diff: ResultDiff
    notable: list[ResultChange]
    resumed: bool = False  # the previous state came from the task's tombstone


@dataclass(frozen=True)
class _Details:
    details: Details
    prefs: dict[int, Prefs]


# A task's stored state as read: its results hash, and its tombstone (used when the hash is empty).
_Stored = tuple[Mapping[bytes, bytes], Mapping[bytes, bytes]]


class TaskSync:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.reads = PortalReads(
            ctx.client, ctx.redis, ctx.keys,
            task_ttl=ctx.settings.b24notify_task_cache_seconds,
            user_ttl=ctx.settings.b24notify_user_cache_seconds,
            zone=portal_zone(ctx.settings.b24_portal_timezone),
        )
        self.parking = Parking(ctx)
        self.prefs = PrefsStore(ctx.redis, ctx.keys)
        self._commit = COMMIT_SYNC.on(ctx.redis)
        self._fetched_at = 0.0
        self._baseline = ctx.baseline()

    def run(self, claim: Claim) -> SyncOutcome:
        return self.run_many([claim])[0]

    def run_many(self, claims: Sequence[Claim]) -> list[SyncOutcome]:
        # Why each run was asked for, taken now: an event during the run asks for the next one.
        triggers = self.ctx.tasks.take_triggers([c.member for c in claims])
        with counted_requests(self.ctx.client) as sent:
            outcomes = self._run_many(claims)
        self._trace(claims, outcomes, triggers, sent.count)
        return outcomes

    def _run_many(self, claims: Sequence[Claim]) -> list[SyncOutcome]:
        # Read once for the job (in memory in a worker); the commit carries its epoch (state_epoch.py).
        self._baseline = self.ctx.baseline()
        outcomes: dict[str, SyncOutcome] = {}
        ready: list[tuple[Claim, int]] = []
        # Two reads for the whole job, not two per task: is the portal paused, which tasks are deleted.
        halted = self.ctx.redis.get(self.ctx.keys.halted(self.ctx.portal))
        dropped = self.ctx.redis.smismember(self.ctx.keys.drop(), [c.member for c in claims]) if claims else []
        strikes = self.ctx.tasks.strikes([c.member for c in claims])
        for claim, drop in zip(claims, dropped, strict=True):
            early = self._before_fetch(claim, halted, bool(drop), strikes.get(claim.member, 0))
            if early is None:
                ready.append((claim, split_task_member(claim.member)[1]))
            else:
                outcomes[claim.member] = early
        if ready:
            self._fetched_at = self.ctx.clock()  # the read below sees every change made before this
            for claim, outcome in self._sync(ready):
                outcomes[claim.member] = outcome
        return [outcomes[c.member] for c in claims]

    def _trace(self, claims: Sequence[Claim], outcomes: list[SyncOutcome], triggers: dict[str, str],
               requests: int) -> None:
        """One sync step per run (trace.py), all in one round trip; the trigger goes back for a run
        that will be retried. A poll that found nothing and failed at nothing writes no step."""
        ctx = self.ctx
        steps: list[Step] = []
        again: dict[str, str] = {}
        for claim, outcome in zip(claims, outcomes, strict=True):
            trigger = triggers.get(claim.member, "poll")
            if outcome.status in RETRIED:
                again[claim.member] = trigger
            portal, _, task = claim.member.rpartition("|")
            diff = outcome.diff
            if portal != ctx.portal or not task.isdigit() or (
                    trigger == "poll" and outcome.status == "synced" and diff is not None and diff.is_empty):
                continue
            changes: dict[str, list[int]] = {}
            for change in diff.changes if diff is not None else ():
                changes.setdefault(change.kind.value, []).append(change.result_id)
            steps.append(sync_step(outcome.task_id, trigger=trigger, requests=requests, job=len(claims),
                                   outcome=outcome.status, changes=changes,
                                   baseline=diff.baseline if diff is not None else (), queued=outcome.queued,
                                   detail=outcome.detail))
        pipe = ctx.redis.pipeline(transaction=False)
        ctx.tasks.keep_triggers(pipe, again)
        if add_steps(pipe, ctx.keys, ctx.portal, steps) or again:
            pipe.execute()

    def _before_fetch(self, claim: Claim, halted: bytes | str | None, drop: bool, strikes: int) -> SyncOutcome | None:
        ctx = self.ctx
        try:
            portal, task_id = split_task_member(claim.member)
        except ValueError:
            # Not "portal|task id" (intake never queues one): nothing to sync, and kept due it
            # would fail every job it rides in.
            ctx.tasks.complete(claim)
            log.error("event=sync.bad_member member=%r", claim.member[:100])
            return SyncOutcome(0, "rejected", detail="not a task member")
        if portal != ctx.portal:
            # A member for a portal this worker does not serve (config changed): leave it be.
            ctx.tasks.complete(claim)
            return SyncOutcome(task_id, "rejected", detail=f"unknown portal {portal}")
        if halted is not None:
            ctx.tasks.retry(claim, ctx.clock() + HALT_SECONDS)
            ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="paused")
            return SyncOutcome(task_id, "halted", detail=as_text(halted))
        if drop:
            return self._drop(claim, task_id, "ONTASKDELETE")
        if strikes >= self.parking.max_strikes:
            # Failures met while syncing park a task on the spot (``_failed``): a task arrives here
            # with the limit reached only through runs that never finished, counted by the reaper.
            reason = f"{strikes} runs in a row ended unfinished (lease expired: the worker died or hung)"
            return SyncOutcome(task_id, self.parking.park(claim, task_id, "died", strikes, reason), detail=reason)
        return None

    def _sync(self, ready: list[tuple[Claim, int]]) -> list[tuple[Claim, SyncOutcome]]:
        try:
            fetched = self.reads.results(task_id for _, task_id in ready)
        except B24Error as exc:  # the batch as a whole failed: the same policy for every task
            return [(claim, self._on_error(claim, task_id, exc)) for claim, task_id in ready]
        except JOB_FAILURES:
            raise
        except Exception as exc:  # a fault of ours reading the batch: see below
            # No task to blame yet: each takes a strike, and from the second one each runs alone
            # (claim.lua), where the fault lands on the task that causes it.
            log.exception("event=sync.batch_error portal=%s tasks=%d", self.ctx.portal, len(ready))
            return [(claim, self._failed(claim, task_id, "error", describe(exc))) for claim, task_id in ready]
        stored = self._stored([task_id for _, task_id in ready])
        done: list[tuple[Claim, SyncOutcome]] = []
        pending: list[_Pending] = []
        for claim, task_id in ready:
            try:
                step = self._diff(claim, task_id, fetched.get(task_id), stored[task_id])
            except JOB_FAILURES:
                raise
            except Exception as exc:  # this task's fault alone (logged, struck, retried)
                step = self._error(claim, task_id, "diff", exc)
            if isinstance(step, _Pending):
                pending.append(step)
            else:
                done.append((claim, step))
        details = self._details(pending)
        for item in pending:
            try:
                outcome = self._finish(item, details)
            except JOB_FAILURES:
                raise
            except Exception as exc:  # this task's fault alone (logged, struck, retried)
                outcome = self._error(item.claim, item.task_id, "commit", exc)
            done.append((item.claim, outcome))
        return done

    def _diff(self, claim: Claim, task_id: int, answer: ResultList | B24Error | MalformedResult | None,
              stored: _Stored) -> _Pending | SyncOutcome:
        ctx = self.ctx
        if isinstance(answer, B24Error):
            return self._on_error(claim, task_id, answer)
        if answer is None:
            # parse_batch gives every call an answer or an error; a call with neither is the
            # portal's glitch, retried like any server error, never taken for "no results".
            return self._on_error(claim, task_id, ServerError("ERROR_UNEXPECTED_ANSWER", "no answer for the task",
                                                              method="tasks.task.result.list"))
        if isinstance(answer, MalformedResult):
            log.error("event=sync.malformed_answer portal=%s task=%d error=%s", ctx.portal, task_id, answer)
            return self._failed(claim, task_id, "malformed", f"unreadable result list: {answer}")
        if not answer.complete:
            ctx.counters.inc("b24notify_result_lists_truncated", portal=ctx.portal)
        previous, resumed = self._previous(stored)
        diff = diff_results(previous, answer.results, self._baseline.cutoff(self._fetched_at),
                            complete=answer.complete)
        kinds = set(ctx.settings.notify_kinds)
        notable = [c for c in diff.changes if c.kind.value in kinds and c.result is not None
                   and c.kind is not ChangeKind.REMOVED]
        return _Pending(claim, task_id, diff, notable, resumed)

    def _details(self, pending: list[_Pending]) -> _Details | Exception | None:
        wanted = [p for p in pending if p.notable]
        if not wanted:
            return None
        authors = [c.result.created_by for p in wanted for c in p.notable if c.result is not None]
        # A result closes when its task is completed: who completed it is read as of now.
        closing = [p.task_id for p in wanted if any(c.kind is ChangeKind.CLOSED for c in p.notable)]
        routes = self.ctx.spec.routes
        # The people of tasks whose details came with their result lists go in the same request as
        # whatever details are still missing: one request, not two, when none is cached yet.
        early: set[int] = set()
        for item in wanted:
            known = self.reads.read_now(item.task_id)
            if known is not None:
                early |= people_needed(routes, known, [c.result.created_by for c in item.notable
                                                       if c.result is not None])
        try:
            details = self.reads.details((p.task_id for p in wanted), [*authors, *early], fresh=closing)
            needed: set[int] = set(authors)
            for item in wanted:
                task = details.tasks.get(item.task_id)
                if isinstance(task, TaskInfo):
                    needed |= people_needed(routes, task, [c.result.created_by for c in item.notable
                                                           if c.result is not None])
            missing = needed - details.people.keys()
            if missing:
                details.people.update(self.reads.people(missing))
            prefs = self.prefs.get_many(self.ctx.portal, sorted(needed)) if needed else {}
        except B24Error as exc:
            return exc
        except JOB_FAILURES:
            raise
        except Exception as exc:  # fails the tasks that need details, not the others
            log.exception("event=sync.details_error portal=%s tasks=%d", self.ctx.portal, len(wanted))
            return exc
        return _Details(details, prefs)

    def _finish(self, item: _Pending, found: _Details | Exception | None) -> SyncOutcome:
        ctx = self.ctx
        alerts: list[Alert] = []
        notices: list[Notice] = []
        if item.notable:
            if isinstance(found, B24Error):
                return self._on_error(item.claim, item.task_id, found)
            if isinstance(found, Exception):
                return self._failed(item.claim, item.task_id, "error", describe(found))
            assert isinstance(found, _Details)
            details = found.details
            task = details.tasks.get(item.task_id)
            if isinstance(task, B24Error):
                return self._on_error(item.claim, item.task_id, task)
            if not isinstance(task, TaskInfo):
                return self._failed(item.claim, item.task_id, "malformed", f"unreadable task details: {task}")
            alerts = [self._alert(task, c.kind, c.key, c.result, details) for c in item.notable
                      if c.result is not None]
            routed = self._route(task, alerts, found)
            if isinstance(routed, B24Error):
                return self._on_error(item.claim, item.task_id, routed)
            notices = routed
        queued = self._commit_state(item.claim, item.task_id, item.diff, notices)
        if queued < 0:
            return SyncOutcome(item.task_id, "stale", item.diff)
        if item.resumed:
            ctx.redis.delete(ctx.keys.gone_results(ctx.portal, item.task_id))  # the state lives again
        ctx.tasks.complete(item.claim)
        self._watch(item)
        for change in item.diff.changes:
            ctx.counters.inc("b24notify_changes", kind=change.kind.value)
            log.info("event=result.%s portal=%s task=%d result=%d", change.kind.value, ctx.portal, item.task_id,
                     change.result_id)
        if item.diff.baseline:
            log.info("event=task.baseline portal=%s task=%d results=%d", ctx.portal, item.task_id,
                     len(item.diff.baseline))
        ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="synced")
        return SyncOutcome(item.task_id, "synced", item.diff, queued, alerts=alerts, notices=notices)

    def _route(self, task: TaskInfo, alerts: list[Alert], found: _Details) -> list[Notice] | B24Error:
        """The notices for these alerts (routing/recipients.py). A person routing needs whose
        ``user.get`` failed fails the task's run (retried): guessing could tell the wrong people."""
        ctx = self.ctx
        spec = ctx.spec
        needed = people_needed(spec.routes, task, [a.result.created_by for a in alerts])
        people: dict[int, Person] = {}
        for uid in needed:
            person = found.details.people.get(uid)
            if isinstance(person, B24Error):
                return person
            if person is not None:
                people[uid] = person
        routed = route(alerts, task=task, routes=spec.routes, people=people, prefs=found.prefs,
                       language=spec.language, default_kinds=ctx.settings.notify_kinds, default_via=spec.default_via)
        for reason, count in routed.skipped.items():
            ctx.counters.inc("b24notify_alerts_skipped", count, portal=ctx.portal, reason=reason)
        for uid in sorted(routed.without_email - ctx.told):
            ctx.told.add(uid)  # once per worker process and person
            log.warning("event=route.no_email portal=%s user=%d detail=%r", ctx.portal, uid,
                        "the portal gives no e-mail address for this person: they get the chat part only")
        return routed.notices

    def _watch(self, item: _Pending) -> None:
        """Keep the task in the watch set for reconciliation, or let it go: a completed task whose
        results are all closed has nothing left to tell (its next change brings it back)."""
        watch = self.ctx.watch
        all_closed = all(stored.status == 1 for stored in item.diff.state.values())
        if all_closed and watch.is_completed(item.task_id):
            watch.forget(item.task_id)
        else:
            watch.touch([item.task_id], active=bool(item.diff.changes), synced_at=self._fetched_at)

    def _alert(self, task: TaskInfo, kind: ChangeKind, key: str, result: TaskResult, details: Details) -> Alert:
        return Alert(
            portal=self.ctx.portal,
            portal_url=self.ctx.spec.portal_url,
            kind=kind,
            change_key=key,
            task=task,
            result=result,
            author_name=details.name(result.created_by),
        )

    def _stored(self, task_ids: list[int]) -> dict[int, _Stored]:
        """Every task's stored state and tombstone, in one round trip."""
        ctx = self.ctx
        pipe = ctx.redis.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hgetall(ctx.keys.results(ctx.portal, task_id))
            pipe.hgetall(ctx.keys.gone_results(ctx.portal, task_id))
        raw = pipe.execute()
        return {task_id: (raw[2 * i], raw[2 * i + 1]) for i, task_id in enumerate(task_ids)}

    @staticmethod
    def _previous(stored: _Stored) -> tuple[dict[int, StoredResult] | None, bool]:
        """The state to diff against (None: never seen), and whether it came from the tombstone."""
        live, gone = stored
        raw, resumed = (live, False) if live else (gone, True)
        if not raw:
            return None, False
        return {int(k): StoredResult.from_json(v) for k, v in raw.items() if k != b"_known"}, resumed

    def _commit_state(self, claim: Claim, task_id: int, diff: ResultDiff | None, notices: list[Notice]) -> int:
        ctx = self.ctx
        deliveries = [[notice.key, notice.target.channel, notice.to_json()] for notice in notices]
        state = {str(rid): stored.to_json() for rid, stored in (diff.state if diff else {}).items()}
        result = self._commit(
            token=ctx.tasks.k.token, results=ctx.keys.results(ctx.portal, task_id), delivery_due=ctx.deliveries.k.due,
            attempts=ctx.tasks.k.attempts, epoch=ctx.keys.epoch(),
            member=claim.member, claim_token=claim.token, now=ctx.clock(),
            mode="store" if diff is not None else "drop", state=json.dumps(state) if state else "{}",
            delivery_prefix=ctx.keys.delivery_prefix(), deliveries=json.dumps(deliveries),
            baseline_epoch=self._baseline.epoch,
            results_ttl=int(self._baseline.keep_seconds + EXPIRY_SLACK_SECONDS), delivery_ttl=KEEP_FINISHED_SECONDS,
        )
        queued = int(result)
        if queued == EPOCH_CHANGED:
            # Redis lost its state after this job read its baseline: nothing was written. Learn
            # the new epoch and run the task again now, baselined from the new connected_at.
            ctx.state.refresh()
            ctx.tasks.retry(claim, ctx.clock())
            ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="state_lost")
            return queued
        if queued < 0:
            log.warning("event=sync.stale_lease portal=%s task=%d", ctx.portal, task_id)
            ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="stale")
        return queued

    def _drop(self, claim: Claim, task_id: int, why: str) -> SyncOutcome:
        ctx = self.ctx
        self._bury(task_id)
        if self._commit_state(claim, task_id, None, []) < 0:
            return SyncOutcome(task_id, "stale")
        ctx.redis.srem(ctx.keys.drop(), claim.member)
        self.reads.forget_task(task_id)
        ctx.watch.forget(task_id)
        ctx.tasks.complete(claim)
        ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="dropped")
        log.info("event=task.dropped portal=%s task=%d reason=%s", ctx.portal, task_id, why)
        return SyncOutcome(task_id, "dropped", detail=why)

    def _bury(self, task_id: int) -> None:
        """Keep the task's state as its tombstone before the state is dropped. Error "0" means "no
        access" as well as "no such task" (docs/protocol.md §3), and a deleted task can be restored: a
        task that comes back resumes from what we knew."""
        ctx = self.ctx
        state = ctx.redis.hgetall(ctx.keys.results(ctx.portal, task_id))
        if not state:
            return
        tomb = ctx.keys.gone_results(ctx.portal, task_id)
        pipe = ctx.redis.pipeline()
        pipe.delete(tomb)
        pipe.hset(tomb, mapping=state)  # type: ignore[arg-type]  # bytes in, bytes out
        pipe.expire(tomb, GONE_STATE_SECONDS)
        pipe.execute()

    def _error(self, claim: Claim, task_id: int, stage: str, exc: Exception) -> SyncOutcome:
        log.exception("event=sync.task_error portal=%s task=%d stage=%s", self.ctx.portal, task_id, stage)
        return self._failed(claim, task_id, "error", describe(exc))

    def _failed(self, claim: Claim, task_id: int, cause: str, reason: str) -> SyncOutcome:
        """A run that failed for a cause of the task's own (parking.py)."""
        return SyncOutcome(task_id, self.parking.fail(claim, task_id, cause, reason), detail=reason)

    def _on_error(self, claim: Claim, task_id: int, exc: B24Error) -> SyncOutcome:
        ctx = self.ctx
        if exc.policy is Policy.DROP_TASK:
            return self._drop(claim, task_id, f"{exc.method} {exc.code}")
        if exc.policy in (Policy.RETRY_SOON, Policy.RETRY_LATER, Policy.REAUTH):
            failures = ctx.tasks.failures(claim.member)
            delay = retry_delay(failures)
            if isinstance(exc, OperationTimeLimit) and exc.reset_at:
                delay = max(delay, exc.reset_at - ctx.clock())
            if isinstance(exc, BudgetSpent):
                delay = max(delay, exc.wait)
            if isinstance(exc, QueryLimitExceeded):
                delay = max(delay, QUERY_LIMIT_PENALTY_SECONDS)
            ctx.tasks.retry(claim, ctx.clock() + delay)
            ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="retry")
            log.warning("event=sync.retry portal=%s task=%d code=%s failures=%d delay=%.1f",
                        ctx.portal, task_id, exc.code, failures, delay)
            return SyncOutcome(task_id, "retry", detail=exc.code)
        if exc.policy is Policy.HALT_PORTAL:
            reason = f"{exc.method} {exc.code} (HTTP {exc.status})"
            first = ctx.redis.set(ctx.keys.halted(ctx.portal), reason, ex=int(HALT_SECONDS), nx=True)
            ctx.tasks.retry(claim, ctx.clock() + HALT_SECONDS)
            ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="halted")
            if first:
                action = HALT_ACTIONS["webhook" if ctx.spec.webhook is not None else "app"]
                log.error("event=portal.halted portal=%s reason=%r action=%s", ctx.portal, reason, action)
            return SyncOutcome(task_id, "halted", detail=reason)
        # REJECTED: our request is wrong. Log its shape (never its values), do not retry.
        ctx.tasks.complete(claim)
        ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="rejected")
        log.error("event=sync.rejected portal=%s task=%d method=%s code=%s params=taskId:int",
                  ctx.portal, task_id, exc.method, exc.code)
        return SyncOutcome(task_id, "rejected", detail=exc.code)
