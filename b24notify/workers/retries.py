"""When a delivery that failed runs again, or that it goes to the dead-letter list. Pure: the
delivery job (workers/deliver.py) keeps the counts in the delivery's record.

``B24NOTIFY_DELIVERY_RETRY_SECONDS`` (10, 60, 300, 1800, 7200 by default) is the schedule for a
failure that persists: after a delivery's first failure it runs again 10 s later, after the
second 60 s later, and so on; when the schedule runs out it is dead-lettered.

Most failures are passing faults (a 500 from the portal, a dropped connection, an SMTP 451, a
full bucket) that are gone a moment later. So the first failure of a series and up to two more
passing faults right after it (``QUICK_RETRIES`` in all, within ``QUICK_WINDOW_SECONDS`` of the
first) are tried again after about 1, 2 and 4 seconds: each drawn between half and all of that,
so that workers that failed together do not come back together, and never longer than the
schedule's first step. Together they stand for the first step; the failure after them takes the
second step (60 s), and so on. So a fault that passes costs seconds, one that persists follows
the configured schedule to the dead-letter list as before, and only the first step is replaced.

The quick retries are counted, not timed: a retry that came late (its worker was killed, or it
waited for the REST budget) is still one of the first few. A failure that needs someone to act
(credentials, access) is not transient: it waits the configured steps from the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

QUICK_RETRIES = 3  # failures of a series that are retried within seconds
QUICK_WINDOW_SECONDS = 60.0  # ... as long as the series is younger than this
QUICK_FIRST_SECONDS = 1.0  # the first quick retry comes after 0.5-1 s; each next one waits twice as long


@dataclass(frozen=True)
class Failures:
    """What a delivery's record remembers of its failures in a row."""

    count: int  # failed attempts, the latest included
    early: int  # of the earlier ones, those retried quickly (the first failure always is "early")
    first_at: float  # when the first of them happened


@dataclass(frozen=True)
class NextTry:
    delay: float  # seconds from now
    early: bool  # this failure stands with the first one for the schedule's first step


def next_try(schedule: Sequence[float], failures: Failures, now: float, *, transient: bool,
             draw: float) -> NextTry | None:
    """When to try again after the latest failure; None when it is time to give up.

    ``draw`` is a random number in [0, 1) for the jitter.
    """
    if not schedule:
        return None
    first = failures.count == 1
    quick = transient and failures.early < QUICK_RETRIES and now - failures.first_at < QUICK_WINDOW_SECONDS
    if first or quick:
        if not transient:
            return NextTry(schedule[0], early=True)
        wait = QUICK_FIRST_SECONDS * 2 ** failures.early * (0.5 + 0.5 * draw)
        return NextTry(min(wait, schedule[0]), early=True)
    # The early failures stood together for the first step; each later one takes the next step.
    step = failures.count - failures.early
    if step >= len(schedule):
        return None
    return NextTry(schedule[step], early=False)
