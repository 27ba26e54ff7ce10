"""The dispatcher: turns due members into RQ jobs.

Every worker process runs one in a thread. Claims are atomic (Lua), so several dispatchers never
hand out the same member; the RQ queue then spreads the jobs over the fleet. The dispatcher also
reaps expired leases, which is how the work of a SIGKILLed worker comes back.

Between ticks it waits on the wake list (BLPOP on a connection of its own): ``schedule`` pushes a
token when a run becomes due before anything else, so an event's read starts within milliseconds.
The wait never outlasts ``poll_seconds`` (runs made due without a token: a pending mark released, a
retry, another dispatcher's reap), the next due member, nor the reap and periodic cadences.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from b24notify.dueset import DueSet
from b24notify.workers.deadline import job_timeout
from b24notify.workers.jobs import DELIVERY_JOB, SYNC_JOB
from b24notify.workers.outage import returned_on_outage

log = logging.getLogger(__name__)

REAP_EVERY_SECONDS = 2.0
RECONCILE_EVERY_SECONDS = 1.0
# How long the dispatcher waits for Redis to take back claims it could not enqueue: its thread
# does nothing else meanwhile, and a stop waits for it.
ENQUEUE_GIVE_BACK_SECONDS = 10.0


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
        wake: Redis | None = None,
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
        # The blocking pop holds its connection for the whole wait: never one shared with others.
        self.wake = wake
        self.wake_key = tasks.k.wake

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
            if not claims:
                continue
            # Claimed but not enqueued (Redis failed in between): no job would ever run them.
            with returned_on_outage(due_set, claims, within=ENQUEUE_GIVE_BACK_SECONDS):
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
                self._wait(self._idle_wait())

    def _idle_wait(self) -> float:
        now = time.monotonic()
        limits = [self.poll_seconds, self._last_reap + REAP_EVERY_SECONDS - now]
        if self.periodic is not None:
            limits.append(self._last_reconcile + RECONCILE_EVERY_SECONDS - now)
        nearest = [t for t in (self.tasks.next_due_at(), self.deliveries.next_due_at()) if t is not None]
        if nearest:
            limits.append(min(nearest) - self.tasks.clock())
        return max(0.01, min(limits))

    def _wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, or less when ``schedule`` pushes a wake-up token."""
        if self.wake is None or self._stop.is_set():
            self._stop.wait(seconds)
            return
        try:
            self.wake.blpop([self.wake_key], timeout=seconds)
        except RedisError as exc:  # Redis down: the tick reports it; wait as a plain sleep meanwhile
            log.warning("event=dispatcher.wake_error error=%s", type(exc).__name__)
            self._stop.wait(seconds)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="b24notify-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.wake is not None:
            self.wake.close()
