"""A due set: members (tasks to sync, deliveries to attempt) that must run at some time, each
worked on by at most one worker at once, and never forgotten when a worker dies.

This is the coalescing and no-loss mechanism; RQ jobs are only the carriers that run claimed
members. The rules, each one Lua script in ``b24notify/lua/``:

- ``schedule``: a member already due keeps its earlier time, so a burst within the debounce window
  becomes one run; a member being worked on gets a *pending* mark instead, so an event that
  arrives during a run causes exactly one more run after it.
- ``claim``: moves due members into the lease zset with a deadline and a fencing token.
- ``release``: ends a lease (done, or retry at a time) and turns a pending mark into one run.
- ``reap``: leases past their deadline (a worker died) become due again now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis import Redis

from b24notify.keys import Keys


def load_lua(name: str) -> str:
    return resources.files("b24notify.lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Claim:
    member: str
    token: str


@dataclass(frozen=True)
class DueSetKeys:
    due: str
    lease: str
    token: str
    pending: str
    since: str
    attempts: str
    counter: str

    @classmethod
    def of(cls, keys: Keys, name: str) -> DueSetKeys:
        return cls(
            due=keys.due(name),
            lease=keys.lease(name),
            token=keys.token(name),
            pending=f"{keys.prefix}:pending:{name}",
            since=f"{keys.prefix}:since:{name}",
            attempts=keys.attempts(name),
            counter=keys.token_counter(),
        )


class DueSet:
    def __init__(self, redis: Redis, keys: Keys, name: str, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.name = name
        self.k = DueSetKeys.of(keys, name)
        self.clock = clock
        self._schedule = redis.register_script(load_lua("schedule"))
        self._claim = redis.register_script(load_lua("claim"))
        self._release = redis.register_script(load_lua("release"))
        self._reap = redis.register_script(load_lua("reap"))
        self._extend = redis.register_script(load_lua("extend"))

    def schedule(self, member: str, at: float | None = None, debounce_cap: float = 0.0) -> bool:
        """Ask for a run at ``at`` (default now). See schedule.lua for the coalescing rules."""
        now = self.clock()
        when = now if at is None else at
        keys = [self.k.due, self.k.lease, self.k.pending, self.k.since]
        return bool(self._schedule(keys=keys, args=[member, when, "0", "", now, debounce_cap]))

    def claim(self, limit: int, lease_seconds: float, only: str = "", gather: float = 0.0) -> list[Claim]:
        """Lease up to ``limit`` due members (or just ``only``, when it is due). With ``gather``,
        once one member is due, members due within that many seconds come along, so that tasks
        whose events arrived close together share one batch request."""
        flat: list[Any] = self._claim(
            keys=[self.k.due, self.k.lease, self.k.token, self.k.counter, self.k.since],
            args=[self.clock(), limit, lease_seconds, only, gather],
        )
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
        return [Claim(items[i], items[i + 1]) for i in range(0, len(items), 2)]

    def complete(self, claim: Claim) -> bool:
        return self._release_claim(claim, "")

    def retry(self, claim: Claim, at: float) -> bool:
        return self._release_claim(claim, repr(float(at)))

    def _release_claim(self, claim: Claim, at: str) -> bool:
        keys = [self.k.due, self.k.lease, self.k.token, self.k.pending]
        return bool(self._release(keys=keys, args=[claim.member, claim.token, at]))

    def reap(self, limit: int = 1000) -> list[str]:
        keys = [self.k.due, self.k.lease, self.k.token, self.k.pending]
        reaped = self._reap(keys=keys, args=[self.clock(), limit])
        return [m.decode() if isinstance(m, bytes) else str(m) for m in reaped]

    def renew(self, claims: list[Claim], lease_seconds: float) -> list[Claim]:
        """Renew the leases still held and return those claims; drop the ones lost meanwhile."""
        if not claims:
            return []
        args: list[Any] = [self.clock() + lease_seconds]
        for claim in claims:
            args += [claim.member, claim.token]
        held = {_text(m) for m in self._extend(keys=[self.k.lease, self.k.token], args=args)}
        return [c for c in claims if c.member in held]

    def holds(self, claim: Claim) -> bool:
        current = self.redis.hget(self.k.token, claim.member)
        return current is not None and _text(current) == claim.token

    def next_due_at(self) -> float | None:
        first = self.redis.zrange(self.k.due, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def failures(self, member: str) -> int:
        """Count one more failure in a row for ``member`` and return the count."""
        return int(self.redis.hincrby(self.k.attempts, member, 1))

    def counts(self) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.k.due)
        pipe.zcard(self.k.lease)
        pipe.hlen(self.k.pending)
        due, leased, pending = pipe.execute()
        return {"due": int(due), "leased": int(leased), "pending": int(pending)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
