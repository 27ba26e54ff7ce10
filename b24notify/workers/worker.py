"""``b24notify worker``: an RQ worker (with RQ's scheduler) plus our dispatcher thread."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested

from b24notify.logs import rq_logging_level
from b24notify.redis_conn import connect
from b24notify.settings import Settings
from b24notify.workers.context import WorkerContexts, bind_contexts, unbind_contexts
from b24notify.workers.dispatcher import Dispatcher

log = logging.getLogger(__name__)


class B24Worker(SimpleWorker):
    """Runs jobs in this process (no fork per job), so the HTTP connection pool to the portal and
    the SMTP settings are reused across jobs; a job timeout still applies (SIGALRM)."""

    contexts: WorkerContexts
    stop_asked_early = False
    dequeuing = False

    def catch_early_stops(self) -> None:
        """Until ``work()`` installs RQ's handlers, SIGTERM and SIGINT only mark a stop. RQ forks its
        scheduler process before it installs them: a signal in between killed the worker and left
        the scheduler running for ever (Ctrl-C of ``make run`` just after it started)."""
        worker_pid = os.getpid()

        def mark(signum: int, frame: FrameType | None) -> None:
            if os.getpid() != worker_pid:
                # The scheduler process, forked before it put its own handlers in: a stop there
                # must end it (RQ's stop_scheduler waits for that), as it did before.
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            self.stop_asked_early = True

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, mark)

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()  # type: ignore[no-untyped-call]  # RQ's own, untyped
        if self.stop_asked_early:
            self._stop_requested = True  # RQ's loop stops before its first job, and its scheduler with it

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        self.dequeuing = True
        try:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        finally:
            self.dequeuing = False

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> Any:
        """RQ beats once more after popping a job and before running it: when Redis is gone right
        then (a failover), the error ended RQ's loop with the job popped and never run, its claims
        leased until their lease ran out. That one beat may fail: the job goes on, and its first
        Redis call waits out the failover in the client's retries."""
        if not self.dequeuing or pipeline is not None:
            return super().heartbeat(timeout, pipeline)
        try:
            return super().heartbeat(timeout, pipeline)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("event=worker.heartbeat_failed error=%r after=%r", type(exc).__name__, "a job was dequeued")
            return None

    def perform_job(self, *args: Any, **kwargs: Any) -> bool:
        token = bind_contexts(self.contexts)
        try:
            return bool(super().perform_job(*args, **kwargs))
        finally:
            unbind_contexts(token)


RESTART_MAX_SECONDS = 30.0


def _asked_to_stop(worker: B24Worker) -> bool:
    return bool(worker._stop_requested or getattr(worker, "_shutdown_requested_date", None) is not None)


def _sleep_unless_stopped(seconds: float) -> bool:
    """Sleep; False when a stop signal came meanwhile (RQ's handler raises StopRequested)."""
    try:
        time.sleep(seconds)
    except StopRequested:
        return False
    return True


def _new_rq_worker(queue: Queue, contexts: WorkerContexts, name: str | None) -> B24Worker | None:
    """An RQ worker, once Redis answers: RQ's Worker() talks to Redis at once (CLIENT SETNAME), and
    a worker started while Redis has no primary (a failover, Redis starting after the workers)
    waits for it with a backoff instead of exiting into a supervisor's crash loop. None: a stop
    signal came meanwhile."""
    waits = 0
    stop = _StopFlag()
    with stop.catching():
        while True:
            try:
                worker = B24Worker([queue], connection=queue.connection, name=name)
                break
            except (RedisConnectionError, RedisTimeoutError) as exc:
                waits += 1
                delay = min(RESTART_MAX_SECONDS, 2.0 ** min(waits - 1, 5))
                log.warning("event=worker.waiting_for_redis attempt=%d delay=%.0f error=%r", waits, delay,
                            type(exc).__name__)
                stop.wait(delay)
                if stop.asked:
                    return None
    if stop.asked:
        return None
    worker.contexts = contexts
    worker.catch_early_stops()  # after our handlers are gone: it puts in its own
    return worker


class _StopFlag:
    """SIGTERM / SIGINT while no RQ worker is there to catch them: remembered, and ends a wait."""

    def __init__(self) -> None:
        self._event = threading.Event()

    @property
    def asked(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)

    @contextmanager
    def catching(self) -> Iterator[None]:
        def mark(signum: int, frame: FrameType | None) -> None:
            self._event.set()

        previous = {signum: signal.signal(signum, mark) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def make_dispatcher(contexts: WorkerContexts, queue: Queue) -> Dispatcher:
    s = contexts.settings
    return Dispatcher(
        queue, contexts.tasks, contexts.deliveries,
        lease_seconds=s.b24notify_lease_seconds,
        sync_batch=s.b24notify_sync_batch,
        delivery_batch=s.b24notify_delivery_batch,
        poll_seconds=s.b24notify_poll_seconds,
        gather_seconds=s.b24notify_gather_seconds,
        periodic=contexts.periodic,
        # Its own connection for the blocking pop on the wake list, with a read timeout above the
        # longest wait (redis-py's would end a long BLPOP as a connection error).
        wake=connect(s.redis_url, socket_timeout=s.b24notify_poll_seconds + 10),
    )


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    contexts = WorkerContexts(settings, connect(settings.redis_url), serving=True)
    # RQ raises its connection's socket timeout above its BLPOP wait, but only for connections made
    # after it looked: it gets a pool of its own, never used before, or BLPOP dies on redis-py's
    # default 5 s read timeout and the worker loops on "could not connect".
    rq_redis = connect(settings.redis_url)
    queue = Queue(settings.b24notify_queue, connection=rq_redis)
    worker = _new_rq_worker(queue, contexts, name)
    if worker is None:
        contexts.close()
        return False
    dispatcher = make_dispatcher(contexts, queue)
    log.info("event=worker.start portals=%s app_mode=%s queue=%s", ",".join(contexts.directory.portals()) or "-",
             settings.app_mode, queue.name)
    try:
        if burst:
            # Burst: hand out what is due now, run it, and stop when the queue is empty.
            while dispatcher.tick():
                worker.work(burst=True)
            return True
        dispatcher.start()
        # RQ sets this level on its own loggers: our level would bring back a line per job.
        level = rq_logging_level(settings.b24notify_log_level)
        restarts = 0
        while True:
            try:
                worked = bool(worker.work(with_scheduler=True, logging_level=level))
            except RedisError as exc:
                # RQ's loop ended on an error and its teardown (scheduler stop, register_death)
                # failed too: Redis is still gone. The same as a loop that ended on its own.
                log.warning("event=worker.teardown_failed error=%r", type(exc).__name__)
                worked = False
            if _asked_to_stop(worker):
                return worked
            # RQ's loop ended on an error it does not retry: Redis gone for longer than the
            # client's retries (a primary lost with no Sentinel promotion yet, an outage). Exiting
            # would take the worker out of a fleet that only lost Redis for a while: start a new RQ
            # worker after a backoff instead; a stop signal meanwhile ends it as usual.
            restarts += 1
            delay = min(RESTART_MAX_SECONDS, 2.0 ** min(restarts - 1, 5))
            log.warning("event=worker.restart restarts=%d delay=%.0f reason=%r", restarts, delay,
                        "the RQ worker loop ended on an error (see the traceback above)")
            if not _sleep_unless_stopped(delay):
                return worked
            restarted = _new_rq_worker(queue, contexts, f"{name}-r{restarts}" if name else None)
            if restarted is None:
                return worked
            worker = restarted
    finally:
        dispatcher.stop()
        contexts.close()
