"""What the overview shows of each portal, read from Redis in a few round trips.

The due sets, leases, the parked hash and the dead-letter list are fleet-wide; their members
name their portal (``portal|task`` for tasks, ``portal:task:…|target`` for deliveries), so one
read of each is split by portal. Past ``SPLIT_LIMIT`` members a set is only counted (the page
says so) instead of read whole on every refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from redis import Redis

from b24notify.console.usage import Usage, usage_from_series
from b24notify.keys import DELIVERIES, TASKS, Keys, as_text
from b24notify.portals.directory import PortalDirectory
from b24notify.portals.spec import HALT_ACTIONS
from b24notify.series import DAY_MINUTES, Series, budget_per_minute
from b24notify.settings.rates import RateLimit

SPLIT_LIMIT = 20_000



@dataclass(frozen=True)
class Depth:
    """A queue of one portal: members due now, due later, being worked on (leased)."""

    due: int = 0
    later: int = 0
    running: int = 0
    oldest_due_seconds: float | None = None  # how long the longest-waiting due member has waited

    @property
    def total(self) -> int:
        return self.due + self.later + self.running


@dataclass(frozen=True)
class Pause:
    method: str
    until: datetime


@dataclass(frozen=True)
class PortalState:
    key: str
    portal_url: str
    mode: str  # webhook | app
    rate: RateLimit
    halted: str | None = None  # why calls to the portal stopped
    halted_seconds: int | None = None  # until the next probe call
    pauses: list[Pause] = field(default_factory=list)  # operating-limit pauses, by method
    tasks: Depth | None = None  # None: too many members to split by portal (SPLIT_LIMIT)
    deliveries: Depth | None = None
    parked: int | None = None
    dead: int | None = None
    watched: int = 0
    last_activity: datetime | None = None
    usage: Usage = field(default_factory=Usage)

    @property
    def action(self) -> str:
        return HALT_ACTIONS[self.mode]

    @property
    def paused(self) -> bool:
        return self.halted is not None


@dataclass(frozen=True)
class Fleet:
    portals: list[PortalState]
    tasks_due: int
    deliveries_due: int
    dead: int
    split: bool  # the queues were split by portal (else only counted)


def task_owner(member: str) -> str | None:
    return member.rpartition("|")[0]


class DeliveryOwners:
    """The portal of a delivery id (``portal:task:…``): the longest served portal key it starts
    with, so ``acme.com:8443`` is not taken for ``acme.com``."""

    def __init__(self, portals: Iterable[str]) -> None:
        self.portals = sorted(portals, key=len, reverse=True)

    def __call__(self, delivery: str) -> str | None:
        for portal in self.portals:
            if delivery.startswith(portal + ":"):
                return portal
        return None


def _depths(due: list[tuple[str, float]], leased: list[str], owner: Callable[[str], str | None],
            now: float) -> dict[str, Depth]:
    owned: dict[str, list[float]] = {}
    running: dict[str, int] = {}
    for member, at in due:
        portal = owner(member)
        if portal is not None:
            owned.setdefault(portal, []).append(at)
    for member in leased:
        portal = owner(member)
        if portal is not None:
            running[portal] = running.get(portal, 0) + 1
    depths = {}
    for portal in set(owned) | set(running):
        times = owned.get(portal, [])
        waiting = [now - at for at in times if at <= now]
        depths[portal] = Depth(due=len(waiting), later=len(times) - len(waiting), running=running.get(portal, 0),
                               oldest_due_seconds=max(waiting) if waiting else None)
    return depths


def _text_pairs(rows: Iterable[tuple[bytes | str, float]]) -> list[tuple[str, float]]:
    return [(as_text(member), float(score)) for member, score in rows]


class Overview:
    def __init__(self, redis: Redis, keys: Keys, directory: PortalDirectory, reserve: float) -> None:
        self.redis = redis
        self.keys = keys
        self.directory = directory
        self.series = Series(redis, keys)
        self.reserve = reserve  # B24_RATE_RESERVE: the share of a portal's budget left to others

    def read(self, now: float | None = None) -> Fleet:
        now = time.time() if now is None else now
        portals = self.directory.portals()
        counts, largest = self._counts()
        split = largest <= SPLIT_LIMIT
        by_portal = self._split(portals, now) if split else None
        states = []
        for portal in portals:
            found = self.directory.get(portal)
            if found is None:
                continue  # uninstalled meanwhile
            spec, install = found
            rate = RateLimit.parse(spec.rate_limit)
            state = self._portal(portal, spec.portal_url, "app" if install is not None else "webhook", rate, now)
            if by_portal is not None:
                tasks, deliveries, parked, dead = by_portal
                state = replace(state, tasks=tasks.get(portal, Depth()), deliveries=deliveries.get(portal, Depth()),
                              parked=parked.get(portal, 0), dead=dead.get(portal, 0))
            usage = usage_from_series(self.series.chart(portal, DAY_MINUTES), budget_per_minute(rate, self.reserve))
            states.append(replace(state, usage=usage))
        # Paused portals first (a halt, then operating-limit pauses), then by name.
        states.sort(key=lambda s: (not s.paused, not s.pauses, s.key))
        return Fleet(states, counts["tasks_due"], counts["deliveries_due"], counts["dead"], split)

    def _counts(self) -> tuple[dict[str, int], int]:
        """Fleet-wide counts, and the largest set the split would read."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.keys.due(TASKS))
        pipe.zcard(self.keys.due(DELIVERIES))
        pipe.zcard(self.keys.deadletter())
        pipe.zcard(self.keys.lease(TASKS))
        pipe.zcard(self.keys.lease(DELIVERIES))
        pipe.hlen(self.keys.parked(TASKS))
        sizes = [int(n) for n in pipe.execute()]
        return {"tasks_due": sizes[0], "deliveries_due": sizes[1], "dead": sizes[2]}, max(sizes)

    def _split(self, portals: list[str], now: float) -> tuple[dict[str, Depth], dict[str, Depth],
                                                               dict[str, int], dict[str, int]]:
        pipe = self.redis.pipeline(transaction=False)
        for name in (TASKS, DELIVERIES):
            pipe.zrange(self.keys.due(name), 0, -1, withscores=True)
            pipe.zrange(self.keys.lease(name), 0, -1)
        pipe.hkeys(self.keys.parked(TASKS))
        pipe.zrange(self.keys.deadletter(), 0, -1)
        task_due, task_leased, delivery_due, delivery_leased, parked, dead = pipe.execute()
        deliveries = DeliveryOwners(portals)
        parked_by: dict[str, int] = {}
        for member in parked:
            portal = task_owner(as_text(member))
            if portal is not None:
                parked_by[portal] = parked_by.get(portal, 0) + 1
        dead_by: dict[str, int] = {}
        for member in dead:
            owner = deliveries(as_text(member))
            if owner is not None:
                dead_by[owner] = dead_by.get(owner, 0) + 1
        return (_depths(_text_pairs(task_due), [as_text(m) for m in task_leased], task_owner, now),
                _depths(_text_pairs(delivery_due), [as_text(m) for m in delivery_leased], deliveries, now),
                parked_by, dead_by)

    def _portal(self, portal: str, portal_url: str, mode: str, rate: RateLimit, now: float) -> PortalState:
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.halted(portal))
        pipe.ttl(self.keys.halted(portal))
        pipe.hkeys(f"{self.keys.operating(portal)}:reset_at")
        pipe.zcard(self.keys.watch_next(portal))
        pipe.zrange(self.keys.watch_active(portal), -1, -1, withscores=True)
        halted, ttl, methods, watched, active = pipe.execute()
        pauses = []
        methods = sorted(as_text(m) for m in methods)
        if methods:
            untils = self.redis.mget([f"{self.keys.operating(portal)}:pause:{m}" for m in methods])
            for method, until in zip(methods, untils, strict=True):
                if until is not None and float(as_text(until)) > now:
                    pauses.append(Pause(method, datetime.fromtimestamp(float(as_text(until)), UTC)))
        return PortalState(
            key=portal, portal_url=portal_url, mode=mode, rate=rate,
            halted=as_text(halted) if halted is not None else None,
            halted_seconds=int(ttl) if halted is not None and int(ttl) > 0 else None,
            pauses=pauses, watched=int(watched),
            last_activity=datetime.fromtimestamp(float(active[0][1]), UTC) if active else None,
        )

