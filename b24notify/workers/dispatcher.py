"""The dispatcher: turns due members into RQ jobs.

Every worker process runs one in a thread. Claims are atomic (Lua), so several dispatchers never
hand out the same member; the RQ queue then spreads the jobs over the fleet. The dispatcher also
reaps expired leases, which is how the work of a SIGKILLed worker comes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from rq import Queue

from b24notify.dueset import DueSet
from b24notify.workers.deadline import job_timeout
from b24notify.workers.jobs import DELIVERY_JOB, SYNC_JOB

log = logging.getLogger(__name__)

REAP_EVERY_SECONDS = 2.0
RECONCILE_EVERY_SECONDS = 1.0


class Dispatcher:
    def __init__(
        self,
        queue: Queue,
        tasks: DueSet,
        deliveries: DueSet,
        *,
        lease_seconds: float,
        sync_batch: int,
        delivery_batch: int,
        poll_seconds: float,
        gather_seconds: float = 0.0,
        max_queued_jobs: int = 1,
        periodic: Callable[[], None] | None = None,
    ) -> None:
        # Reconciliation (and app-install upkeep) for every portal, once a second.
        self.periodic = periodic
        self._last_reconcile = 0.0
        self.queue = queue
        self.tasks = tasks
        self.deliveries = deliveries
        self.lease_seconds = lease_seconds
        self.sync_batch = sync_batch
        self.delivery_batch = delivery_batch
        self.poll_seconds = poll_seconds
        self.gather_seconds = gather_seconds
        # Backpressure: while jobs wait in the queue (workers busy, or sleeping on the REST
        # budget), due members stay in the due set, so the next claim takes them all at once and
        # they share one batch request instead of each costing one.
        self.max_queued_jobs = max_queued_jobs
        # A job must end well before its lease does, or the fencing token refuses its writes. The
        # job itself stops starting sends a quarter of this ahead (workers/deadline.py).
        self.job_timeout = job_timeout(lease_seconds)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_reap = 0.0

    def tick(self) -> int:
        """Reap if it is time, then claim what is due and enqueue it. Returns jobs enqueued."""
        now = time.monotonic()
        if now - self._last_reap >= REAP_EVERY_SECONDS:
            self._last_reap = now
            for due_set in (self.tasks, self.deliveries):
                reaped = due_set.reap()
                if reaped:
                    log.warning("event=lease.expired set=%s members=%d", due_set.name, len(reaped))
        if self.periodic is not None and now - self._last_reconcile >= RECONCILE_EVERY_SECONDS:
            self._last_reconcile = now
            self.periodic()
        enqueued = 0
        if self.queue.count >= self.max_queued_jobs:
            return 0
        for due_set, batch, func in (
            (self.tasks, self.sync_batch, SYNC_JOB),
            (self.deliveries, self.delivery_batch, DELIVERY_JOB),
        ):
            gather = self.gather_seconds if due_set is self.tasks else 0.0
            claims = due_set.claim(batch, self.lease_seconds, gather=gather)
            if claims:
                self.queue.enqueue_call(
                    func,
                    args=([[c.member, c.token] for c in claims],),
                    timeout=self.job_timeout,
                    result_ttl=0,
                    failure_ttl=24 * 3600,
                    description=f"{func.rsplit('.', 1)[-1]} x{len(claims)}",
                )
                enqueued += 1
        return enqueued

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.tick()
            except Exception:  # the loop must survive a Redis blip; the error is logged, not hidden
                log.exception("event=dispatcher.error")
                self._stop.wait(1.0)
                continue
            if not busy:
                self._stop.wait(self._idle_wait())

    def _idle_wait(self) -> float:
        nearest = [t for t in (self.tasks.next_due_at(), self.deliveries.next_due_at()) if t is not None]
        if not nearest:
            return self.poll_seconds
        return max(0.01, min(self.poll_seconds, min(nearest) - self.tasks.clock()))

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="b24notify-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
