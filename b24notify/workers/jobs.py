"""RQ job functions. They carry claims (member + fencing token) made by the dispatcher; all state
lives in Redis, so a job that dies is simply claimed and run again after its lease expires.
"""

from __future__ import annotations

from b24notify.dueset import Claim
from b24notify.keys import delivery_id
from b24notify.workers.context import current_context
from b24notify.workers.deliver import deliver_many
from b24notify.workers.sync import TaskSync

SYNC_JOB = "b24notify.workers.jobs.run_sync"
DELIVERY_JOB = "b24notify.workers.jobs.run_deliveries"


def run_sync(claims: list[list[str]]) -> list[str]:
    ctx = current_context()
    lease = ctx.settings.b24notify_lease_seconds
    held = ctx.tasks.renew([Claim(m, t) for m, t in claims], lease)
    outcomes = TaskSync(ctx).run_many(held)
    # Send what this sync queued right away, in this job: it saves a trip through the dispatcher
    # (up to B24NOTIFY_POLL_SECONDS) and lets the chat messages share one batch request. Claimed
    # like any delivery, so a crash here leaves them to the usual retry path.
    fresh = [delivery_id(alert.key, channel) for o in outcomes for alert in o.alerts for channel in ctx.channels]
    deliveries = [c for did in fresh for c in ctx.deliveries.claim(1, lease, only=did)]
    if deliveries:
        deliver_many(ctx, deliveries)
    return [o.status for o in outcomes]


def run_deliveries(claims: list[list[str]]) -> list[str]:
    ctx = current_context()
    held = ctx.deliveries.renew([Claim(m, t) for m, t in claims], ctx.settings.b24notify_lease_seconds)
    return [o.status for o in deliver_many(ctx, held)]
