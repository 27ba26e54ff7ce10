"""Per-minute counts per portal, for the console's charts (issue 10): requests to the portal's REST
API, alerts sent, alerts that failed (a retry or a dead letter), over the last hour or day.

One small hash per portal, series and hour (``keys.series``): field = minute of the hour, value =
count. Each expires 25 h after its hour began, so a day's chart is always whole and the memory is
bounded whatever the traffic: at most 26 hashes of at most 60 small fields per portal and series.
The workers write them in the round trip of the counter they mirror (``Counters.inc``,
metrics.py); nothing else writes them.

Times are unix seconds; a minute is ``int(t // 60)``. Reads give lists oldest first, the last item
being the current (unfinished) minute, with zeros where nothing happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from b24notify.keys import Keys
from b24notify.settings.rates import RateLimit

REST = "rest"  # requests to the portal: one unit of its rate budget each (a batch is one)
SENT = "sent"  # alerts delivered
FAILED = "failed"  # alerts whose attempt failed: retried later, or dead-lettered
SERIES_NAMES = (REST, SENT, FAILED)

KEEP_SECONDS = 25 * 3600  # from the hour's start: the oldest minute of a 24 h read is always there
DAY_MINUTES = 24 * 60
MAX_MINUTES = KEEP_SECONDS // 60 - 60  # the longest read that is always whole (24 h)

# The counters (metrics.py) a series mirrors: (counter name, its outcome label, "" = any) -> series.
RECORDED: Mapping[tuple[str, str], str] = {
    ("b24notify_rest_requests", ""): REST,
    ("b24notify_notifications", "sent"): SENT,
    ("b24notify_notifications", "retry"): FAILED,
    ("b24notify_notifications", "dead"): FAILED,
}


def series_of(counter: str, labels: Mapping[str, str]) -> str | None:
    """The series a counter increment also counts in, if any (it needs a portal label)."""
    if "portal" not in labels:
        return None
    return RECORDED.get((counter, "")) or RECORDED.get((counter, labels.get("outcome", "")))


class _Commands(Protocol):
    """What ``record`` needs: a sync or an async pipeline (commands are queued, not awaited)."""

    def hincrby(self, name: str, key: str, amount: int = 1) -> Any: ...

    def expireat(self, name: str, when: int) -> Any: ...


def record(pipe: _Commands, keys: Keys, portal: str, name: str, amount: int, at: float) -> None:
    """Queue the increment of ``name`` at time ``at`` on ``pipe`` (two commands, no round trip)."""
    minute = int(at // 60)
    hour = minute // 60
    key = keys.series(portal, name, hour)
    pipe.hincrby(key, str(minute % 60), amount)
    pipe.expireat(key, hour * 3600 + KEEP_SECONDS)  # a fixed deadline: the same on every write


@dataclass(frozen=True)
class _Window:
    """The minutes a read covers and the hashes that hold them."""

    first: int  # unix minute of the oldest item
    minutes: int
    hours: tuple[int, ...]

    @classmethod
    def ending(cls, now: float, minutes: int) -> _Window:
        if not 1 <= minutes <= MAX_MINUTES:
            raise ValueError(f"a series read covers 1 to {MAX_MINUTES} minutes, not {minutes}")
        last = int(now // 60)
        first = last - minutes + 1
        return cls(first, minutes, tuple(range(first // 60, last // 60 + 1)))

    def assemble(self, hashes: Sequence[Mapping[bytes, bytes] | Mapping[str, str]]) -> list[int]:
        values = [0] * self.minutes
        for hour, raw in zip(self.hours, hashes, strict=True):
            for field_, count in raw.items():
                index = hour * 60 + int(field_) - self.first
                if 0 <= index < self.minutes:
                    values[index] = int(count)
        return values


class Series:
    """Read the per-minute series (sync: tools, tests, or a web handler in a thread)."""

    def __init__(self, redis: Redis, keys: Keys, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock

    def record(self, portal: str, name: str, amount: int = 1) -> None:
        """Count ``amount`` now, on its own round trip (the workers count through ``Counters.inc``)."""
        pipe = self.redis.pipeline(transaction=False)
        record(pipe, self.keys, portal, name, amount, self.clock())
        pipe.execute()

    def last(self, portal: str, name: str, minutes: int = 60) -> list[int]:
        """Counts per minute over the last ``minutes``, oldest first, ending with the current minute."""
        return self.chart(portal, minutes, (name,))[name]

    def totals(self, portal: str, name: str, minutes: int = 60) -> int:
        return sum(self.last(portal, name, minutes))

    def chart(self, portal: str, minutes: int = DAY_MINUTES,
              names: Iterable[str] = SERIES_NAMES) -> dict[str, list[int]]:
        """Several series of one portal over the same minutes, in one round trip."""
        window = _Window.ending(self.clock(), minutes)
        wanted = list(names)
        pipe = self.redis.pipeline(transaction=False)
        for name in wanted:
            for hour in window.hours:
                pipe.hgetall(self.keys.series(portal, name, hour))
        return _split(window, wanted, pipe.execute())


class AsyncSeries:
    """The same reads for the web process (redis.asyncio)."""

    def __init__(self, redis: AsyncRedis, keys: Keys, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock

    async def last(self, portal: str, name: str, minutes: int = 60) -> list[int]:
        return (await self.chart(portal, minutes, (name,)))[name]

    async def totals(self, portal: str, name: str, minutes: int = 60) -> int:
        return sum(await self.last(portal, name, minutes))

    async def chart(self, portal: str, minutes: int = DAY_MINUTES,
                    names: Iterable[str] = SERIES_NAMES) -> dict[str, list[int]]:
        window = _Window.ending(self.clock(), minutes)
        wanted = list(names)
        pipe = self.redis.pipeline(transaction=False)
        for name in wanted:
            for hour in window.hours:
                pipe.hgetall(self.keys.series(portal, name, hour))
        return _split(window, wanted, await pipe.execute())


def _split(window: _Window, names: list[str], raw: list[Any]) -> dict[str, list[int]]:
    per = len(window.hours)
    return {name: window.assemble(raw[i * per:(i + 1) * per]) for i, name in enumerate(names)}


def downsample(values: Sequence[int], step: int) -> list[int]:
    """Sums of ``step`` consecutive minutes, aligned on the newest (the oldest group may be
    shorter): 1,440 minutes in steps of 15 give 96 bars for a day's chart."""
    if step < 1:
        raise ValueError("step must be at least 1")
    head = len(values) % step
    groups = [values[:head]] if head else []
    groups += [values[i:i + step] for i in range(head, len(values), step)]
    return [sum(group) for group in groups]


class RatedPortal(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def rate_limit(self) -> str: ...


@dataclass(frozen=True)
class Budgets:
    """The REST budget b24notify allows itself on each portal: the portal's rate limit (its
    ``rate_limit``, else ``B24_RATE_LIMIT``) minus the reserve left to its other integrations
    (``B24_RATE_RESERVE``) — the line over the chart of REST requests."""

    default: RateLimit
    reserve: float
    own: Mapping[str, RateLimit] = field(default_factory=dict)  # portals with a rate limit of their own

    @classmethod
    def of(cls, default_rate_limit: str, reserve: float, portals: Iterable[RatedPortal] = ()) -> Budgets:
        """From the settings (``b24_rate_limit``, ``b24_rate_reserve``) and the portal specs known
        up front (webhook portals; an app install's portal has the default)."""
        return cls(RateLimit.parse(default_rate_limit), reserve,
                   {spec.key: RateLimit.parse(spec.rate_limit) for spec in portals})

    def limit(self, portal: str) -> RateLimit:
        return self.own.get(portal, self.default)

    def per_second(self, portal: str) -> float:
        return budget_per_second(self.limit(portal), self.reserve)

    def per_minute(self, portal: str) -> float:
        return budget_per_minute(self.limit(portal), self.reserve)


def budget_per_second(limit: RateLimit, reserve: float) -> float:
    """Requests per second the fleet may send the portal in the long run (its bucket's drain)."""
    return limit.drain * (1.0 - reserve)


def budget_per_minute(limit: RateLimit, reserve: float) -> float:
    return budget_per_second(limit, reserve) * 60.0
