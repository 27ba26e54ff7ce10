"""Sync and delivery in-process, one step at a time, as the worker's jobs run them."""

from __future__ import annotations

from b24notify.keys import task_member
from b24notify.workers.context import WorkerContext
from b24notify.workers.deliver import deliver
from b24notify.workers.sync import SyncOutcome, TaskSync


def sync(ctx: WorkerContext, task_id: int) -> SyncOutcome:
    """One sync of ``task_id`` now."""
    member = task_member(ctx.portal, task_id)
    ctx.tasks.schedule(member, at=0)
    (claim,) = ctx.tasks.claim(1, 60, only=member)
    return TaskSync(ctx).run(claim)


def delivery_ids(outcome: SyncOutcome, channel: str | None = None) -> list[str]:
    """The ids of the deliveries a sync queued (its notices' keys), on one channel or all."""
    return [n.key for n in outcome.notices if channel is None or n.target.channel == channel]


def deliver_all(ctx: WorkerContext) -> list[str]:
    """Every due delivery, until none is left (retries scheduled later stay)."""
    statuses = []
    while claims := ctx.deliveries.claim(50, 60):
        statuses += [deliver(ctx, c).status for c in claims]
    return statuses
