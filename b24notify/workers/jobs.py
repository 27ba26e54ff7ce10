"""RQ job functions. They carry claims (member + fencing token) made by the dispatcher; all state
lives in Redis, so a job that dies is simply claimed and run again after its lease expires.

One job may carry claims of several portals (the due sets are shared): each portal's share runs
with that portal's context, so its requests go to its own endpoint and spend its own budget.

A job keeps its own deadline ahead of RQ's timeout (workers/deadline.py): sends that do not fit
before it stay due for the next job, so the timeout never cuts a send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from b24notify.alerts import Alert
from b24notify.dueset import Claim, DueSet
from b24notify.keys import split_task_member
from b24notify.notices import Notice
from b24notify.workers.context import WorkerContext, WorkerContexts, current_contexts
from b24notify.workers.deadline import MIN_SEND_SECONDS, JobDeadline
from b24notify.workers.deliver import deliver_many, load_records
from b24notify.workers.outage import returned_on_outage
from b24notify.workers.sync import TaskSync

log = logging.getLogger(__name__)

SYNC_JOB = "b24notify.workers.jobs.run_sync"
DELIVERY_JOB = "b24notify.workers.jobs.run_deliveries"


def run_sync(claims: list[list[str]]) -> list[str]:
    deadline = JobDeadline.for_current_job()
    contexts = current_contexts()
    lease = contexts.settings.b24notify_lease_seconds
    statuses: dict[str, str] = {}
    with returned_on_outage(contexts.tasks, [Claim(m, t) for m, t in claims], min(deadline.left(), lease)):
        held = contexts.tasks.renew([Claim(m, t) for m, t in claims], lease)
        for ctx, group in _by_portal(contexts, contexts.tasks, held, lambda c: split_task_member(c.member)[0]):
            for claim, status in zip(group, sync_and_deliver(ctx, group, deadline), strict=True):
                statuses[claim.member] = status
    return [statuses.get(m, "stale") for m, _ in claims]


def sync_and_deliver(ctx: WorkerContext, claims: list[Claim], deadline: JobDeadline | None = None) -> list[str]:
    deadline = deadline or JobDeadline()
    outcomes = TaskSync(ctx).run_many(claims)
    # Send what this sync queued right away, in this job: it saves a trip through the dispatcher
    # (up to B24NOTIFY_POLL_SECONDS) and lets the chat messages share one batch request. Claimed
    # like any delivery, so a crash here leaves them to the usual retry path. A sync that used up
    # the job's time leaves them due: the dispatcher hands them to the next job at once.
    if deadline.left() < MIN_SEND_SECONDS:
        return [o.status for o in outcomes]
    lease = ctx.settings.b24notify_lease_seconds
    fresh = [notice.key for o in outcomes for notice in o.notices]
    deliveries = [c for did in fresh for c in ctx.deliveries.claim(1, lease, only=did)]
    if deliveries:
        with returned_on_outage(ctx.deliveries, deliveries, min(deadline.left(), lease)):
            deliver_many(ctx, deliveries, deadline=deadline)
    return [o.status for o in outcomes]


def run_deliveries(claims: list[list[str]]) -> list[str]:
    deadline = JobDeadline.for_current_job()
    contexts = current_contexts()
    lease = contexts.settings.b24notify_lease_seconds
    statuses: dict[str, str] = {}
    with returned_on_outage(contexts.deliveries, [Claim(m, t) for m, t in claims], min(deadline.left(), lease)):
        held = contexts.deliveries.renew([Claim(m, t) for m, t in claims], lease)
        records = load_records(contexts.redis, contexts.keys, held)  # read once: for the portal, then the send
        for ctx, group in _by_portal(contexts, contexts.deliveries, held,
                                     lambda c: _delivery_portal(records[c.member])):
            for outcome in deliver_many(ctx, group, records, deadline=deadline):
                statuses[outcome.delivery_id] = outcome.status
    return [statuses.get(m, "stale") for m, _ in claims]


def _delivery_portal(record: dict[str, str]) -> str:
    if "portal" in record:  # a sent record keeps its portal, not its notice
        return record["portal"]
    if "notice" in record:
        return Notice.from_json(record["notice"]).portal
    return Alert.from_json(record["alert"]).portal if "alert" in record else ""


def _by_portal(contexts: WorkerContexts, due: DueSet, claims: list[Claim],
               portal_of: Callable[[Claim], str]) -> list[tuple[WorkerContext, list[Claim]]]:
    groups: dict[str, list[Claim]] = {}
    for claim in claims:
        groups.setdefault(portal_of(claim), []).append(claim)
    runs = []
    for portal, group in groups.items():
        ctx = contexts.get(portal) if portal else None
        if ctx is None:
            # Uninstalled, or removed from the config: nobody can call that portal any more.
            for claim in group:
                due.complete(claim)
            log.warning("event=job.unknown_portal portal=%s set=%s members=%d", portal or "?", due.name, len(group))
            continue
        runs.append((ctx, group))
    return runs
