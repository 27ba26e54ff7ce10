"""A due set: members (tasks to sync, deliveries to attempt) that must run at some time, each
worked on by at most one worker at once, and never forgotten when a worker dies.

This is the coalescing and no-loss mechanism; RQ jobs are only the carriers that run claimed
members. The rules, each one Lua script in ``b24notify/lua/``:

- ``schedule``: a member already due keeps its earlier time, so a burst within the debounce window
  becomes one run; an event on a quiet task is due at once and opens a debounce window, events in
  the window give one more run at its end; a member being worked on gets a *pending* mark instead,
  so an event that arrives during a run causes exactly one more run after it. A run due before
  anything else wakes the dispatchers (the wake list).
- ``claim``: moves due members into the lease zset with a deadline and a fencing token.
- ``release``: ends a lease (done, retry at a time, or park) and turns a pending mark into one run.
- ``reap``: leases past their deadline (a worker died) become due again now, with a strike.

Strikes count a member's runs in a row that failed for a cause of its own: an error while working
on it, an unreadable answer for it, or a run that never finished (reaped). From two strikes a
member is claimed alone, so a member that kills its worker takes no healthy member down with it
twice; the sync parks a task at ``B24NOTIFY_TASK_MAX_ATTEMPTS`` strikes (``park``): it leaves the
due set with its reason, for ``b24notify doctor`` to show, until a new event or an operator gives
it one more run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline

from b24notify.keys import TASKS, Keys, split_task_member
from b24notify.scripts import CLAIM, EXTEND, REAP, RELEASE, SCHEDULE
from b24notify.trace import TRACE_MAXLEN, TRACE_TTL_SECONDS

SOLO_FROM_STRIKES = 2  # a member whose last two runs failed is claimed alone (claim.lua)
TRIGGER_TTL_SECONDS = 86400  # the trigger hash's TTL, renewed by every write (TRIGGER_TTL in schedule.lua)


@dataclass(frozen=True)
class Claim:
    member: str
    token: str


@dataclass(frozen=True)
class ParkedMember:
    """Why a member left the due set for good (until an event or an operator brings it back)."""

    member: str
    reason: str  # what went wrong, for the operator (never a secret: exception text or our own words)
    cause: str  # error | malformed | died: a small vocabulary, also the metric's label
    at: float  # unix time it was parked
    strikes: int

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "member"})

    @classmethod
    def from_json(cls, member: str, raw: str | bytes) -> ParkedMember:
        data = json.loads(raw)
        return cls(member, str(data.get("reason", "")), str(data.get("cause", "")), float(data.get("at", 0.0)),
                   int(data.get("strikes", 0)))


@dataclass(frozen=True)
class DueSetKeys:
    due: str
    lease: str
    token: str
    pending: str
    since: str
    attempts: str
    counter: str
    strikes: str
    parked: str
    window: str
    wake: str
    trigger: str

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
            strikes=keys.strikes(name),
            parked=keys.parked(name),
            window=keys.window(name),
            wake=keys.wake(),
            trigger=keys.trigger(name),
        )


class DueSet:
    def __init__(self, redis: Redis, keys: Keys, name: str, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.name = name
        self.keys = keys
        self.k = DueSetKeys.of(keys, name)
        self.clock = clock
        self._schedule = SCHEDULE.on(redis)
        self._claim = CLAIM.on(redis)
        self._release = RELEASE.on(redis)
        self._reap = REAP.on(redis)
        self._extend = EXTEND.on(redis)

    def schedule(self, member: str, at: float | None = None, debounce_cap: float = 0.0, trigger: str = "") -> bool:
        """Ask for a run at ``at`` (default now). See schedule.lua for the coalescing rules: with a
        ``debounce_cap`` this is an event's schedule, ``at`` = now + the debounce (the leading edge
        and its window apply, as burst mode is off here). Wakes the dispatchers when the run comes
        before anything else due. ``trigger`` (a task's: sweep, manual) writes a ``scheduled`` step
        to the portal's trace and is kept for the run's sync step (trace.py)."""
        now = self.clock()
        when = now if at is None else at
        # The drop, metrics, watch and intake-rate keys are the web's; the arguments say they go
        # unused here (a key that is never touched: this set's own since hash stands in).
        unused = self.k.since
        trace = self.keys.trace(split_task_member(member)[0]) if trigger else unused
        return bool(self._schedule(
            due=self.k.due, lease=self.k.lease, pending=self.k.pending, since=self.k.since, drop=unused,
            metrics=unused, watch_active=unused, watch_next=unused, intake_rate=unused, window=self.k.window,
            wake=self.k.wake, trace=trace, triggers=self.k.trigger if trigger else unused,
            member=member, at=when, also_drop="0", metrics_field="", now=now, debounce_cap=debounce_cap,
            task_id="", first_poll="0", burst_threshold="0",
            trigger=trigger, event="", trace_maxlen=TRACE_MAXLEN, trace_ttl=TRACE_TTL_SECONDS,
        ))

    def take_triggers(self, members: Sequence[str]) -> dict[str, str]:
        """Why each member's run was asked for (``event``, ``sweep``, ``manual``; absent: a poll,
        or a retry whose run did not put it back), taken from the hash in one round trip."""
        if not members:
            return {}
        pipe = self.redis.pipeline()  # MULTI: a trigger written meanwhile is not lost between the two
        pipe.hmget(self.k.trigger, list(members))
        pipe.hdel(self.k.trigger, *members)
        found, _ = pipe.execute()
        return {m: _text(v) for m, v in zip(members, found, strict=True) if v is not None}

    def keep_triggers(self, pipe: Pipeline, triggers: dict[str, str]) -> None:
        """Put triggers back for runs that will be retried (on ``pipe``): a newer one is kept."""
        if not triggers:
            return
        for member, trigger in triggers.items():
            pipe.hsetnx(self.k.trigger, member, trigger)
        pipe.expire(self.k.trigger, TRIGGER_TTL_SECONDS)

    def claim(self, limit: int, lease_seconds: float, only: str = "", gather: float = 0.0) -> list[Claim]:
        """Lease up to ``limit`` due members (or just ``only``, when it is due). With ``gather``,
        once one member is due, members due within that many seconds come along, so that tasks
        whose events arrived close together share one batch request."""
        flat: list[Any] = self._claim(
            due=self.k.due, lease=self.k.lease, token=self.k.token, counter=self.k.counter, since=self.k.since,
            strikes=self.k.strikes,
            now=self.clock(), limit=limit, lease_seconds=lease_seconds, only=only, gather=gather,
            solo_from=SOLO_FROM_STRIKES,
        )
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
        return [Claim(items[i], items[i + 1]) for i in range(0, len(items), 2)]

    def complete(self, claim: Claim) -> bool:
        return self._release_claim(claim, "")

    def retry(self, claim: Claim, at: float) -> bool:
        return self._release_claim(claim, repr(float(at)))

    def park(self, claim: Claim, reason: str, cause: str, *, strikes: int, keep_strikes: int) -> bool:
        """End the lease and take the member out of the due set, recording why.

        It keeps ``keep_strikes`` (the limit minus one): a new event for it, or ``unpark``, gives it
        one more run, and one more failure parks it again at once. So a poison task costs one
        failed run per event, not a whole series; a task that was fixed (a deploy, an edit in the
        portal) runs cleanly, and that clears its strikes and its park record.
        """
        record = ParkedMember(claim.member, reason[:500], cause, self.clock(), strikes)
        return self._release_claim(claim, "park", record.to_json(), str(keep_strikes))

    def parked(self) -> list[ParkedMember]:
        """The parked members, oldest first."""
        raw = self.redis.hgetall(self.k.parked)
        return sorted((ParkedMember.from_json(_text(m), v) for m, v in raw.items()), key=lambda p: p.at)

    def unpark(self, member: str, *, keep_strikes: int) -> bool:
        """An operator's "try it again": one more run now (see ``park``). False when not parked."""
        if not self.redis.hexists(self.k.parked, member):
            return False
        self.redis.hset(self.k.strikes, member, keep_strikes)
        self.schedule(member, trigger="manual" if self.name == TASKS else "")
        return True

    def strike(self, member: str) -> int:
        """Count one more run of ``member`` that failed for a cause of its own; return the count."""
        return int(self.redis.hincrby(self.k.strikes, member, 1))

    def strikes(self, members: Sequence[str]) -> dict[str, int]:
        if not members:
            return {}
        values = self.redis.hmget(self.k.strikes, list(members))
        return {m: int(v) for m, v in zip(members, values, strict=True) if v is not None}

    def _release_claim(self, claim: Claim, at: str, record: str = "", keep_strikes: str = "") -> bool:
        return bool(self._release(
            due=self.k.due, lease=self.k.lease, token=self.k.token, pending=self.k.pending, strikes=self.k.strikes,
            parked=self.k.parked, attempts=self.k.attempts,
            member=claim.member, claim_token=claim.token, at=at, record=record, keep_strikes=keep_strikes,
        ))

    def reap(self, limit: int = 1000) -> list[str]:
        reaped = self._reap(due=self.k.due, lease=self.k.lease, token=self.k.token, pending=self.k.pending,
                            strikes=self.k.strikes, now=self.clock(), limit=limit)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in reaped]

    def renew(self, claims: list[Claim], lease_seconds: float) -> list[Claim]:
        """Renew the leases still held and return those claims; drop the ones lost meanwhile."""
        if not claims:
            return []
        pairs: list[str] = []
        for claim in claims:
            pairs += [claim.member, claim.token]
        held = {_text(m) for m in self._extend(lease=self.k.lease, token=self.k.token,
                                               deadline=self.clock() + lease_seconds, held=pairs)}
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
