"""Sync due tasks: fetch their results (batched), diff each against stored state, and commit each
task's new state together with the notifications it implies (the outbox), atomically.

Sending happens later, in delivery jobs that read the outbox: a crash after the commit loses
nothing, and a crash before it leaves the state untouched so the next run finds the same diff.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from b24notify.alerts import Alert
from b24notify.diff import ChangeKind, ResultChange, ResultDiff, StoredResult, diff_results
from b24notify.dueset import Claim, load_lua
from b24notify.keys import as_text, delivery_id, split_task_member
from b24notify.rest.errors import B24Error, BudgetSpent, OperationTimeLimit, Policy, QueryLimitExceeded
from b24notify.rest.guard import QUERY_LIMIT_PENALTY_SECONDS
from b24notify.results import MalformedResult, TaskResult
from b24notify.task_info import TaskInfo
from b24notify.workers.context import WorkerContext
from b24notify.workers.portal_reads import Details, PortalReads

log = logging.getLogger(__name__)

HALT_SECONDS = 300.0  # how long a portal rests after a permanent error before one probe call
MAX_RETRY_SECONDS = 600.0


@dataclass
class SyncOutcome:
    task_id: int
    status: str  # synced | dropped | retry | halted | rejected | stale
    diff: ResultDiff | None = None
    queued: int = 0
    detail: str = ""
    alerts: list[Alert] = field(default_factory=list)


@dataclass
class _Pending:
    claim: Claim
    task_id: int
    diff: ResultDiff
    notable: list[ResultChange]


def retry_delay(failures: int, rng: random.Random | None = None) -> float:
    base = min(MAX_RETRY_SECONDS, 5.0 * 2 ** max(0, failures - 1))
    return base * (0.5 + (rng or random).random() / 2)


class TaskSync:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.reads = PortalReads(
            ctx.client, ctx.redis, ctx.keys,
            task_ttl=ctx.settings.b24notify_task_cache_seconds,
            user_ttl=ctx.settings.b24notify_user_cache_seconds,
        )
        self._commit = ctx.redis.register_script(load_lua("commit_sync"))
        self._fetched_at = 0.0

    def run(self, claim: Claim) -> SyncOutcome:
        return self.run_many([claim])[0]

    def run_many(self, claims: Sequence[Claim]) -> list[SyncOutcome]:
        outcomes: dict[str, SyncOutcome] = {}
        ready: list[tuple[Claim, int]] = []
        # Two reads for the whole job, not two per task: is the portal paused, which tasks are deleted.
        halted = self.ctx.redis.get(self.ctx.keys.halted(self.ctx.portal))
        dropped = self.ctx.redis.smismember(self.ctx.keys.drop(), [c.member for c in claims]) if claims else []
        for claim, drop in zip(claims, dropped, strict=True):
            early = self._before_fetch(claim, halted, bool(drop))
            if early is None:
                ready.append((claim, split_task_member(claim.member)[1]))
            else:
                outcomes[claim.member] = early
        if ready:
            self._fetched_at = self.ctx.clock()  # the read below sees every change made before this
            for claim, outcome in self._sync(ready):
                outcomes[claim.member] = outcome
        return [outcomes[c.member] for c in claims]

    def _before_fetch(self, claim: Claim, halted: bytes | str | None, drop: bool) -> SyncOutcome | None:
        ctx = self.ctx
        portal, task_id = split_task_member(claim.member)
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
        return None

    def _sync(self, ready: list[tuple[Claim, int]]) -> list[tuple[Claim, SyncOutcome]]:
        try:
            fetched = self.reads.results(task_id for _, task_id in ready)
        except B24Error as exc:  # the batch as a whole failed: the same policy for every task
            return [(claim, self._on_error(claim, task_id, exc)) for claim, task_id in ready]
        done: list[tuple[Claim, SyncOutcome]] = []
        pending: list[_Pending] = []
        kinds = set(self.ctx.settings.notify_kinds)
        for claim, task_id in ready:
            answer = fetched.get(task_id)
            if isinstance(answer, B24Error):
                done.append((claim, self._on_error(claim, task_id, answer)))
            elif isinstance(answer, MalformedResult) or answer is None:
                done.append((claim, self._malformed(claim, task_id, str(answer))))
            else:
                diff = diff_results(self._previous(task_id), answer, self.ctx.connected_at)
                notable = [c for c in diff.changes if c.kind.value in kinds and c.result is not None
                           and c.kind is not ChangeKind.REMOVED]
                pending.append(_Pending(claim, task_id, diff, notable))
        details = self._details(pending)
        for item in pending:
            done.append((item.claim, self._finish(item, details)))
        return done

    def _details(self, pending: list[_Pending]) -> Details | B24Error | None:
        wanted = [p for p in pending if p.notable]
        if not wanted:
            return None
        authors = [c.result.created_by for p in wanted for c in p.notable if c.result is not None]
        try:
            return self.reads.details((p.task_id for p in wanted), authors)
        except B24Error as exc:
            return exc

    def _finish(self, item: _Pending, details: Details | B24Error | None) -> SyncOutcome:
        ctx = self.ctx
        alerts: list[Alert] = []
        if item.notable:
            if isinstance(details, B24Error):
                return self._on_error(item.claim, item.task_id, details)
            assert isinstance(details, Details)
            task = details.tasks.get(item.task_id)
            if isinstance(task, B24Error):
                return self._on_error(item.claim, item.task_id, task)
            assert isinstance(task, TaskInfo)
            alerts = [self._alert(task, c.kind, c.key, c.result, details.names) for c in item.notable
                      if c.result is not None]
        queued = self._commit_state(item.claim, item.task_id, item.diff, alerts)
        if queued < 0:
            return SyncOutcome(item.task_id, "stale", item.diff)
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
        return SyncOutcome(item.task_id, "synced", item.diff, queued, alerts=alerts)

    def _watch(self, item: _Pending) -> None:
        """Keep the task in the watch set for reconciliation, or let it go: a completed task whose
        results are all closed has nothing left to tell (its next change brings it back)."""
        watch = self.ctx.watch
        all_closed = all(stored.status == 1 for stored in item.diff.state.values())
        if all_closed and watch.is_completed(item.task_id):
            watch.forget(item.task_id)
        else:
            watch.touch([item.task_id], active=bool(item.diff.changes), synced_at=self._fetched_at)

    def _alert(self, task: TaskInfo, kind: ChangeKind, key: str, result: TaskResult, names: dict[int, str]) -> Alert:
        return Alert(
            portal=self.ctx.portal,
            portal_url=self.ctx.spec.portal_url,
            kind=kind,
            change_key=key,
            task=task,
            result=result,
            author_name=names.get(result.created_by, ""),
        )

    def _previous(self, task_id: int) -> dict[int, StoredResult] | None:
        raw = self.ctx.redis.hgetall(self.ctx.keys.results(self.ctx.portal, task_id))
        if not raw:
            return None
        return {int(k): StoredResult.from_json(v) for k, v in raw.items() if k != b"_known"}

    def _commit_state(self, claim: Claim, task_id: int, diff: ResultDiff | None, alerts: list[Alert]) -> int:
        ctx = self.ctx
        deliveries = [
            [delivery_id(alert.key, channel), channel, alert.to_json()]
            for alert in alerts
            for channel in ctx.channels
        ]
        state = {str(rid): stored.to_json() for rid, stored in (diff.state if diff else {}).items()}
        result = self._commit(
            keys=[ctx.tasks.k.token, ctx.keys.results(ctx.portal, task_id), ctx.deliveries.k.due,
                  ctx.tasks.k.attempts],
            args=[claim.member, claim.token, ctx.clock(), "store" if diff is not None else "drop",
                  json.dumps(state) if state else "{}", ctx.keys.delivery_prefix(), json.dumps(deliveries)],
        )
        queued = int(result)
        if queued < 0:
            log.warning("event=sync.stale_lease portal=%s task=%d", ctx.portal, task_id)
            ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="stale")
        return queued

    def _drop(self, claim: Claim, task_id: int, why: str) -> SyncOutcome:
        ctx = self.ctx
        if self._commit_state(claim, task_id, None, []) < 0:
            return SyncOutcome(task_id, "stale")
        ctx.redis.srem(ctx.keys.drop(), claim.member)
        self.reads.forget_task(task_id)
        ctx.watch.forget(task_id)
        ctx.tasks.complete(claim)
        ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="dropped")
        log.info("event=task.dropped portal=%s task=%d reason=%s", ctx.portal, task_id, why)
        return SyncOutcome(task_id, "dropped", detail=why)

    def _malformed(self, claim: Claim, task_id: int, detail: str) -> SyncOutcome:
        log.error("event=sync.malformed_answer portal=%s task=%d error=%s", self.ctx.portal, task_id, detail)
        self.ctx.tasks.complete(claim)
        self.ctx.counters.inc("b24notify_jobs", portal=self.ctx.portal, outcome="malformed")
        return SyncOutcome(task_id, "rejected", detail=detail)

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
                action = ("check B24_WEBHOOK_URL, its scopes (task, im, user) and the portal plan"
                          if ctx.spec.webhook is not None else
                          "reinstall the app on the portal (or fix B24_CLIENT_ID / B24_CLIENT_SECRET)")
                log.error("event=portal.halted portal=%s reason=%r action=%s", ctx.portal, reason, action)
            return SyncOutcome(task_id, "halted", detail=reason)
        # REJECTED: our request is wrong. Log its shape (never its values), do not retry.
        ctx.tasks.complete(claim)
        ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="rejected")
        log.error("event=sync.rejected portal=%s task=%d method=%s code=%s params=taskId:int",
                  ctx.portal, task_id, exc.method, exc.code)
        return SyncOutcome(task_id, "rejected", detail=exc.code)
