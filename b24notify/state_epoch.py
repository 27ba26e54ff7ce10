"""The epoch of b24notify's state in Redis: how every process notices that Redis lost its data.

What b24notify knows lives in Redis: the results each task had (so a result is told once), the
outbox, the watch set, and each portal's ``connected_at``, before which results are a silent
baseline. When Redis loses that (no AOF and a restart, an eviction, a failover to an empty replica,
a flush), a worker that still remembered the old ``connected_at`` would take every result since
then for new: a flood of repeats. So the state carries an *epoch*, a random id made by the first
serving process (web or worker) together with ``connected_at`` (``lua/state_epoch.lua``).

Every serving process remembers the epoch it knows. A sync job reads its baseline (epoch and
``connected_at``) once; its commit carries the epoch and ``commit_sync.lua`` refuses to write
under another one, so a loss between the read and the commit cannot alert old results. Workers
also compare the epoch once a second (one HGET), the web on every ``/readyz``. An epoch that is
gone or changed means the state was lost: the process starts over from *now* (a new epoch,
``connected_at`` = now for every portal, so results from before are a silent baseline again),
logs ``event=state.lost`` once, and the loss is recorded for ``/readyz`` and ``b24notify doctor``.

Only serving processes write here: ``doctor``, ``register`` and ``sync --task`` read, so running
them days before going live does not move ``connected_at``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from b24notify.keys import Keys, as_text
from b24notify.metrics import counter_field
from b24notify.scripts import STATE_EPOCH

log = logging.getLogger(__name__)

LOSS_RECORD_SECONDS = 7 * 86400  # how long /readyz and doctor report a state loss
# A results hash outlives the baseline horizon by this much: room for the portal's clock running
# ahead of ours and for the time between reading a task and committing it (see Baseline.cutoff).
EXPIRY_SLACK_SECONDS = 3600.0
EPOCH_CHANGED = -2  # commit_sync.lua's answer when the state's epoch is not the one given
LOSSES_METRIC = "b24notify_state_losses"


def iso_time(moment: float) -> str:
    """A unix time as ISO 8601 in UTC, always with microseconds: such strings sort like the times
    they name, which ``state_epoch.lua`` relies on."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds")


def process_name(role: str) -> str:
    return f"{role} {socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Baseline:
    """What one sync job diffs against, read once per job: the epoch the state belongs to and the
    portal's ``connected_at``. The job's commit carries ``epoch``."""

    epoch: str  # "" while no serving process has made one
    connected_at: datetime
    keep_seconds: float  # B24NOTIFY_RESULTS_KEEP_DAYS

    def cutoff(self, now: float) -> datetime:
        """Results created before this are a silent baseline when a task is seen for the first time.

        That is results from before the portal was connected, and results older than the keep
        window: a quiet task's results hash expires ``keep`` + slack after its last commit, so every
        result it held was created more than ``keep`` ago, and a task that comes back after that
        must not tell them again. A result that nobody saw for ``keep`` (30 days) is not news."""
        horizon = datetime.fromtimestamp(now - self.keep_seconds, UTC)
        return max(self.connected_at, horizon)


@dataclass(frozen=True)
class StateLoss:
    """The last state loss, as recorded for ``/readyz`` and ``doctor`` (kept 7 days)."""

    at: str
    reason: str
    epoch: str  # the epoch the state started over as
    previous: str
    by: str  # the process that found it

    @classmethod
    def from_mapping(cls, raw: Mapping[bytes | str, bytes | str]) -> StateLoss | None:
        data = {as_text(k): as_text(v) for k, v in raw.items()}
        if "at" not in data:
            return None
        return cls(data["at"], data.get("reason", ""), data.get("epoch", ""), data.get("previous", ""),
                   data.get("by", ""))

    def describe(self) -> str:
        return (f"state lost, found {self.at[:19]}Z by {self.by} ({self.reason}): started over silently, "
                "results before that are a baseline; check Redis persistence (AOF, noeviction)")


@dataclass(frozen=True)
class EpochAnswer:
    epoch: str
    outcome: str  # same | created | adopted | lost (state_epoch.lua)
    connected_at: dict[str, datetime]


def _call(keys: Keys, known: str, portals: Sequence[str], now: float, by: str) -> tuple[list[Any], list[Any]]:
    return STATE_EPOCH.keys_args(
        epoch=keys.epoch(), lost=keys.state_lost(), metrics=keys.metrics(),
        connected_at=[keys.connected_at(p) for p in portals],
        known=known, new_epoch=secrets.token_hex(8), now=iso_time(now), by=by, loss_ttl=LOSS_RECORD_SECONDS,
        losses_field=counter_field(LOSSES_METRIC),
    )


def _parse(reply: Sequence[Any], portals: Sequence[str]) -> EpochAnswer:
    epoch, outcome, *stamps = [as_text(x) if x is not None else "" for x in reply]
    return EpochAnswer(epoch, outcome, {p: datetime.fromisoformat(s) for p, s in zip(portals, stamps, strict=False)
                                        if s})


def _report(answer: EpochAnswer, known: str, by: str) -> None:
    """Say what happened, once per change of epoch and process."""
    if answer.outcome == "lost" or (known and answer.epoch != known):
        log.error("event=state.lost epoch_was=%s epoch=%s by=%r portals=%d action=%r", known or "-", answer.epoch,
                  by, len(answer.connected_at),
                  "started over silently (results from before now are a baseline); alerts of the gap are lost; "
                  "make Redis durable: appendonly yes, maxmemory-policy noeviction (b24notify doctor)")
    elif answer.outcome == "created":
        log.info("event=state.epoch_created epoch=%s by=%r portals=%d", answer.epoch, by, len(answer.connected_at))


class StateEpoch:
    """The epoch as one process knows it. Thread-safe: a worker's jobs and its dispatcher's tick
    share it.

    ``serving`` processes (web, workers) make the epoch and ``connected_at`` when missing; the
    others (``doctor``, ``sync --task``, ``register``) only read, and a portal without
    ``connected_at`` is baselined from *now* for them without storing it."""

    def __init__(self, redis: Redis, keys: Keys, *, by: str, keep_seconds: float, serving: bool,
                 portals: Callable[[], Sequence[str]] = list, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = keys
        self.by = by
        self.keep_seconds = keep_seconds
        self.serving = serving
        self.portals = portals
        self.clock = clock
        self._script = redis.register_script(STATE_EPOCH.source)
        self._lock = threading.Lock()
        self._known = ""
        self._connected: dict[str, datetime] = {}

    @property
    def known(self) -> str:
        return self._known

    def baseline(self, portal: str) -> Baseline:
        if not self.serving:
            return self._read(portal)
        with self._lock:
            if not self._known or portal not in self._connected:
                self._establish([portal])
            return Baseline(self._known, self._connected[portal], self.keep_seconds)

    def verify(self) -> bool:
        """Is the epoch in Redis still the one we know? If not, start over now (and say so).
        One HGET; a serving worker calls it every second."""
        if not self.serving:
            return True
        current = self.redis.hget(self.keys.epoch(), "id")
        if current is not None and self._known and as_text(current) == self._known:
            return True
        with self._lock:
            before = self._known
            self._establish([])
            return bool(before) and before == self._known

    def refresh(self) -> None:
        """A commit was refused under our epoch: learn the current one (the caller runs again)."""
        self.verify()

    def _establish(self, extra: Sequence[str]) -> None:
        portals = list(dict.fromkeys([*self.portals(), *self._connected, *extra]))
        known = self._known
        script_keys, args = _call(self.keys, known, portals, self.clock(), self.by)
        answer = _parse(self._script(keys=script_keys, args=args), portals)
        _report(answer, known, self.by)
        self._known = answer.epoch
        self._connected = dict(answer.connected_at)

    def _read(self, portal: str) -> Baseline:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.keys.epoch(), "id")
        pipe.get(self.keys.connected_at(portal))
        epoch, stamp = pipe.execute()
        if stamp is None:
            log.info("event=state.not_connected portal=%s detail=%r", portal,
                     "no serving process has started for this portal: results from before now are a baseline")
            connected = datetime.fromtimestamp(self.clock(), UTC)
        else:
            connected = datetime.fromisoformat(as_text(stamp))
        return Baseline(as_text(epoch) if epoch is not None else "", connected, self.keep_seconds)

    def last_loss(self) -> StateLoss | None:
        return StateLoss.from_mapping(self.redis.hgetall(self.keys.state_lost()))


async def establish_async(redis: AsyncRedis, keys: Keys, known: str, portals: Sequence[str], by: str,
                          now: float | None = None) -> EpochAnswer:
    """The web's side of ``StateEpoch``: the same script, on the web's async client."""
    script_keys, args = _call(keys, known, portals, time.time() if now is None else now, by)
    reply = await redis.eval(STATE_EPOCH.source, len(script_keys), *script_keys, *args)
    answer = _parse(reply, portals)
    _report(answer, known, by)
    return answer
