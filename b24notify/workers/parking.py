"""Failures of a task's own, and parking: what a sync does when one task cannot be synced while
the others can (an error while diffing or committing it, an answer for it we cannot read, a run
that never finished).

Each such failure is a strike (``DueSet.strike``; the reaper counts the runs that never finished).
Below ``B24NOTIFY_TASK_MAX_ATTEMPTS`` strikes in a row the task runs again later, with backoff;
at the limit it is parked: out of the due set and out of the watch set, with its reason, for
``b24notify doctor`` and the ``b24notify_tasks_parked`` counter to show. Its next event (or the
discovery sweep, once the task changes, or an operator's ``b24notify sync --task ID``) gives it one
more run, which un-parks it if it passes and parks it again at once if not (``DueSet.park``).

Errors the portal answers with are not strikes: they have their own policy (rest/errors.py), and a
portal-wide fault (an outage, a rate limit) must never park healthy tasks.
"""

from __future__ import annotations

import logging
import random

from b24notify.dueset import Claim
from b24notify.workers.context import WorkerContext

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 600.0
UNPARK_HINT = "see `b24notify doctor`; its next event or `b24notify sync --task ID` gives it one more run"


def retry_delay(failures: int, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with jitter: 5 s, 10 s, 20 s … at most 10 minutes."""
    base = min(MAX_RETRY_SECONDS, 5.0 * 2.0 ** max(0, failures - 1))
    return base * (0.5 + (rng or random).random() / 2)


def describe(exc: BaseException) -> str:
    """An exception as a park reason: its type and message, short. Never a payload."""
    return f"{type(exc).__name__}: {exc}"[:300]


class Parking:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.max_strikes = ctx.settings.b24notify_task_max_attempts

    def fail(self, claim: Claim, task_id: int, cause: str, reason: str) -> str:
        """One more strike; a retry with backoff, or parking at the limit. Returns the sync status:
        failed, parked or stale."""
        ctx = self.ctx
        strikes = ctx.tasks.strike(claim.member)
        if strikes >= self.max_strikes:
            return self.park(claim, task_id, cause, strikes, reason)
        delay = retry_delay(strikes)
        ctx.tasks.retry(claim, ctx.clock() + delay)
        ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="failed")
        log.warning("event=sync.task_failed portal=%s task=%d cause=%s strikes=%d delay=%.1f",
                    ctx.portal, task_id, cause, strikes, delay)
        return "failed"

    def park(self, claim: Claim, task_id: int, cause: str, strikes: int, reason: str) -> str:
        ctx = self.ctx
        if not ctx.tasks.park(claim, reason, cause, strikes=strikes, keep_strikes=self.max_strikes - 1):
            return "stale"
        ctx.watch.forget(task_id)  # polls would only fail it again
        ctx.counters.inc("b24notify_tasks_parked", portal=ctx.portal, cause=cause)
        ctx.counters.inc("b24notify_jobs", portal=ctx.portal, outcome="parked")
        log.error("event=task.parked portal=%s task=%d cause=%s strikes=%d reason=%r action=%s", ctx.portal, task_id,
                  cause, strikes, reason, UNPARK_HINT)
        return "parked"
