"""Per-method time budget (docs/protocol.md §6 "Resource (operating) limit").

Every answer's ``time`` carries ``operating`` (seconds this method spent for us over the last 10
minutes) and ``operating_reset_at``. Past the portal's limit the method is blocked with 429
``OPERATION_TIME_LIMIT``. We pause a method ourselves when it nears the limit, until its reset,
so the 429 is rare; when it comes anyway, the method pauses fleet-wide until the reset we last saw.
A paused call raises ``OperationTimeLimit`` without touching the network; the job reschedules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from redis import Redis

from b24notify.keys import as_text
from b24notify.rest.errors import OperationTimeLimit

DEFAULT_PAUSE_SECONDS = 60.0


class OperatingBudget:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        limit_seconds: float = 480.0,
        threshold: float = 0.8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.prefix = prefix  # e.g. "b24n:operating:acme.bitrix24.com"
        self.limit_seconds = limit_seconds
        self.threshold = threshold
        self.clock = clock

    def _pause_key(self, method: str) -> str:
        return f"{self.prefix}:pause:{method}"

    def _reset_key(self) -> str:
        return f"{self.prefix}:reset_at"

    def check(self, method: str) -> None:
        until = self.redis.get(self._pause_key(method))
        if until is not None:
            reset_at = float(as_text(until))
            if reset_at > self.clock():
                error = OperationTimeLimit("OPERATION_TIME_LIMIT", f"{method} paused by b24notify until {reset_at:.0f}",
                                           method=method)
                error.reset_at = reset_at
                raise error

    def observe(self, method: str, time_info: Mapping[str, Any]) -> None:
        try:
            operating = float(time_info.get("operating") or 0)
            reset_at = float(time_info.get("operating_reset_at") or 0)
        except (TypeError, ValueError):
            return
        if reset_at:
            self.redis.hset(self._reset_key(), method, reset_at)
        if operating >= self.limit_seconds * self.threshold and reset_at > self.clock():
            self.pause(method, reset_at)

    def pause(self, method: str, until: float | None = None) -> float:
        """Pause ``method`` for the whole fleet until ``until`` (default: its last known reset)."""
        if until is None:
            known = self.redis.hget(self._reset_key(), method)
            until = float(as_text(known)) if known is not None else 0.0
            if until <= self.clock():
                until = self.clock() + DEFAULT_PAUSE_SECONDS
        ttl = max(1, int(until - self.clock()) + 1)
        self.redis.set(self._pause_key(method), repr(until), ex=ttl)
        return until
