"""A job's own deadline, kept well ahead of RQ's hard timeout, and the one stretch that timeout
must never cut.

RQ ends a job that outlives its timeout by raising ``JobTimeoutException`` from SIGALRM, wherever
the job happens to be (workers/worker.py runs jobs in the worker's main thread). Cut between an
SMTP server's "accepted" and our record of it, a mail goes out twice. So:

- the job keeps a deadline of its own, a quarter of the timeout ahead of it, and starts a send
  only when the channel's worst case fits before it (``admits``); what does not fit stays due
  for the next job, which is not a failed attempt;
- each send is bounded by that deadline too (``send_end``), where the channel can bound itself;
- and from a send to its record, SIGALRM waits (``alarm_deferred``): should the timeout come
  anyway, it is raised the moment the record is written.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from rq import get_current_job

SLACK_SHARE = 0.25  # of RQ's timeout, kept between our deadline and its alarm
MIN_SLACK_SECONDS = 1.0
MIN_SEND_SECONDS = 1.0  # less than this left and not even a job's first send starts


def job_timeout(lease_seconds: float) -> int:
    """RQ's hard limit for a job, in whole seconds (SIGALRM): it must end well before its lease."""
    return max(5, int(lease_seconds * 0.8))


class JobDeadline:
    def __init__(self, at: float = math.inf, clock: Callable[[], float] = time.monotonic) -> None:
        self.at = at  # on ``clock``'s scale; infinite: no limit (a tool or a test calling job code)
        self._clock = clock
        self._sends = 0

    @classmethod
    def for_current_job(cls) -> JobDeadline:
        """The running RQ job's deadline; none outside a job."""
        job = get_current_job()
        if job is None or not job.timeout or job.timeout < 0:
            return cls()
        return cls.within(float(job.timeout))

    @classmethod
    def within(cls, timeout: float, clock: Callable[[], float] = time.monotonic) -> JobDeadline:
        slack = max(MIN_SLACK_SECONDS, timeout * SLACK_SHARE)
        return cls(clock() + timeout - slack, clock)

    def left(self) -> float:
        return self.at - self._clock()

    def admits(self, send_seconds: float) -> bool:
        """May a send that can take up to ``send_seconds`` start now? A job's first send may start
        with less (its time is then bounded by the deadline), so that a job shorter than a send's
        worst case still gets something done."""
        left = self.left()
        if self._sends == 0:
            return left >= MIN_SEND_SECONDS
        return left >= send_seconds

    def send_end(self) -> float | None:
        """Count one send started; the ``time.monotonic()`` by which it must be over, if any."""
        self._sends += 1
        if math.isinf(self.at):
            return None
        return time.monotonic() + self.left()


@contextmanager
def alarm_deferred() -> Iterator[None]:
    """Hold the job timeout's SIGALRM until the block ends, then raise it as RQ would have.

    Only the main thread receives signals (and only it may set handlers); elsewhere there is no
    alarm to hold.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[tuple[int, FrameType | None]] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        fired.append((signum, frame))

    previous = signal.signal(signal.SIGALRM, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGALRM, previous)
        if fired and callable(previous):
            previous(*fired[0])
