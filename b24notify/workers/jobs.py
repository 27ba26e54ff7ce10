"""RQ job functions. They carry claims (member + fencing token) made by the dispatcher; all state
lives in Redis, so a job that dies is simply claimed and run again after its lease expires.
"""

from __future__ import annotations

from b24notify.dueset import Claim
from b24notify.workers.context import current_context
from b24notify.workers.deliver import deliver_many
from b24notify.workers.sync import TaskSync

SYNC_JOB = "b24notify.workers.jobs.run_sync"
DELIVERY_JOB = "b24notify.workers.jobs.run_deliveries"


def run_sync(claims: list[list[str]]) -> list[str]:
    ctx = current_context()
    sync = TaskSync(ctx)
    return [o.status for o in sync.run_many([Claim(member, token) for member, token in claims])]


def run_deliveries(claims: list[list[str]]) -> list[str]:
    ctx = current_context()
    return [o.status for o in deliver_many(ctx, [Claim(member, token) for member, token in claims])]
