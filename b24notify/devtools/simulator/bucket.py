"""The portal's two limits (docs/protocol.md §6): the request-rate leaky bucket and per-method
"operating" time, plus the ``time`` object every answer carries.

Clocks are injected: the bucket drains on a monotonic clock, operating time is kept in unix time
because ``operating_reset_at`` is a unix timestamp.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

OPERATING_WINDOW_SECONDS = 600.0  # "over the last 10 minutes"


class LeakyBucket:
    """Every request adds 1; the counter drains ``drain_per_second``. A request that would take the
    counter past ``capacity`` is refused (and adds nothing). ``capacity <= 0`` turns the limit off."""

    def __init__(
        self, capacity: int = 50, drain_per_second: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.drain_per_second = drain_per_second
        self._clock = clock
        self._level = 0.0
        self._checked_at = clock()

    @property
    def level(self) -> float:
        self._drain()
        return self._level

    def admit(self) -> bool:
        self._drain()
        if self.capacity <= 0:
            return True
        if self._level + 1 > self.capacity:
            return False
        self._level += 1
        return True

    def reconfigure(self, capacity: int, drain_per_second: float) -> None:
        self._drain()
        self.capacity = capacity
        self.drain_per_second = drain_per_second

    def _drain(self) -> None:
        now = self._clock()
        self._level = max(0.0, self._level - (now - self._checked_at) * self.drain_per_second)
        self._checked_at = now


class OperatingLedger:
    """Execution time per method over a sliding 10-minute window.

    The portal keeps ten one-minute buckets; a sliding window of individual calls gives the same
    ``operating`` sum and a close enough ``operating_reset_at``. ``cost`` replaces the measured time
    of each call (the simulator answers in microseconds, so tests of the limit need a fake cost).
    ``limit`` None means no blocking, the on-premise default.
    """

    def __init__(
        self, *, limit: float | None = None, cost: float | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.limit = limit
        self.cost = cost
        self._clock = clock
        self._calls: defaultdict[str, deque[tuple[float, float]]] = defaultdict(deque)

    def operating(self, method: str) -> float:
        return sum(seconds for _, seconds in self._window(method))

    def reset_at(self, method: str) -> int:
        calls = self._window(method)
        oldest = calls[0][0] if calls else self._clock()
        return int(oldest + OPERATING_WINDOW_SECONDS)

    def is_blocked(self, method: str) -> bool:
        """Once the sum is over the limit, the *next* call of that method is refused."""
        return self.limit is not None and self.operating(method) > self.limit

    def charge(self, method: str, measured_seconds: float) -> None:
        seconds = self.cost if self.cost is not None else measured_seconds
        self._calls[method].append((self._clock(), seconds))

    def _window(self, method: str) -> deque[tuple[float, float]]:
        calls = self._calls[method]
        horizon = self._clock() - OPERATING_WINDOW_SECONDS
        while calls and calls[0][0] <= horizon:
            calls.popleft()
        return calls


def time_info(
    *, start: float, finish: float, processing: float, operating: float, operating_reset_at: int
) -> dict[str, Any]:
    """The ``time`` member of an answer (fields per docs/protocol.md §6 and the seed example)."""
    return {
        "start": start,
        "finish": finish,
        "duration": finish - start,
        "processing": processing,
        "date_start": datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds"),
        "date_finish": datetime.fromtimestamp(finish, UTC).isoformat(timespec="seconds"),
        "operating_reset_at": operating_reset_at,
        "operating": operating,
    }
