"""The dead-letter list: deliveries that failed for good, with their reasons; list, replay, purge.

The list (a zset of delivery ids) and the delivery records it points to expire together: a dead
record lives 30 days (``workers/deliver.py``), and the worker upkeep drops list entries whose
record is gone (``expire``), so the list never names deliveries that nobody can replay, and
``doctor`` does not fail for good on them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis

from b24notify.alerts import Alert
from b24notify.dueset import DueSet
from b24notify.keys import DELIVERIES, Keys, as_text
from b24notify.notices import Notice
from b24notify.scripts import DEADLETTER_EXPIRE
from b24notify.trace import Step, add_steps, replay_step

# A dead delivery's record lives this long after its death (workers/deliver.py sets it, as
# KEEP_FINISHED_SECONDS: tests/test_deadletter_purge.py checks they agree); its entry goes with it.
DEAD_RECORD_SECONDS = 30 * 86400
# A replayed delivery has a week to go through; sending it (or its death) sets its 30 days again.
REPLAYED_RECORD_SECONDS = 7 * 86400
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def replay_trace(delivery: str, channel: str, notice: str | None, alert: str | None,
                 by: str) -> tuple[str, Step] | None:
    """The portal and the ``replay`` step of a replayed delivery, from its record's notice (or
    the one alert of a record from before issue 9); None when neither is readable."""
    try:
        if notice is not None:
            found = Notice.from_json(notice)
            alerts, recipient, portal = found.alerts, found.target.key, found.portal
        elif alert is not None:
            one = Alert.from_json(alert)
            alerts, recipient, portal = (one,), channel, one.portal
        else:
            return None
    except (ValueError, KeyError, TypeError):
        return None
    return portal, replay_step(alerts[0].task.id, delivery=delivery, recipient=recipient,
                               channel=channel or recipient.split(":", 1)[0],
                               results=[a.result.id for a in alerts], by=by)


def parse_age(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` → seconds. Raises ValueError otherwise."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an age like 7d, 12h, 30m or 90s")
    return float(match[1]) * _UNIT_SECONDS[match[2].lower()]


@dataclass(frozen=True)
class DeadDelivery:
    id: str
    channel: str
    dead_at: datetime
    attempts: int
    reason: str


class DeadLetters:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._expire = DEADLETTER_EXPIRE.on(redis)  # lua/deadletter_expire.lua

    def expire(self, now: float | None = None, limit: int = 1000) -> int:
        """Drop the entries whose delivery record expired, or did at ``now``. Returns how many."""
        oldest = (time.time() if now is None else now) - DEAD_RECORD_SECONDS
        return int(self._expire(deadletter=self.keys.deadletter(), delivery_prefix=self.keys.delivery_prefix(),
                                limit=limit, oldest=oldest))

    def count(self) -> int:
        self.expire()
        return int(self.redis.zcard(self.keys.deadletter()))

    def entries(self, limit: int = 100) -> list[DeadDelivery]:
        self.expire()
        rows: list[tuple[bytes, float]] = self.redis.zrange(  # type: ignore[assignment]
            self.keys.deadletter(), 0, limit - 1, withscores=True
        )
        dead = []
        for member, score in rows:
            delivery = as_text(member)
            record = {as_text(k): as_text(v) for k, v in self.redis.hgetall(self.keys.delivery(delivery)).items()}
            dead.append(DeadDelivery(
                id=delivery,
                channel=record.get("channel", "?"),
                dead_at=datetime.fromtimestamp(score, UTC),
                attempts=int(record.get("attempts", "0")),
                reason=record.get("last_error", "(record expired)"),
            ))
        return dead

    def replay(self, delivery_ids: list[str] | None = None, *, by: str = "cli") -> list[str]:
        """Queue dead deliveries again (all of them when ``delivery_ids`` is None). Returns the ids
        queued; ids that are not dead are skipped, and ids whose record expired leave the list
        (there is nothing left to send). Each replay is a ``replay`` step in its portal's trace,
        with ``by``: who asked (``cli``, ``console:<user>``)."""
        wanted = delivery_ids if delivery_ids is not None else [
            as_text(m) for m in self.redis.zrange(self.keys.deadletter(), 0, -1)  # type: ignore[arg-type]
        ]
        deliveries = DueSet(self.redis, self.keys, DELIVERIES)
        replayed = []
        for delivery in wanted:
            key = self.keys.delivery(delivery)
            if self.redis.zscore(self.keys.deadletter(), delivery) is None:
                continue
            read = self.redis.pipeline(transaction=False)
            read.exists(key)
            read.hmget(key, ["channel", "notice", "alert"])
            exists, fields = read.execute()
            if not exists:
                self.redis.zrem(self.keys.deadletter(), delivery)
                continue
            channel, notice, alert = (as_text(v) if v is not None else None for v in fields)
            pipe = self.redis.pipeline()
            pipe.hset(key, mapping={"status": "pending", "attempts": 0})
            pipe.expire(key, REPLAYED_RECORD_SECONDS)
            pipe.zrem(self.keys.deadletter(), delivery)
            traced = replay_trace(delivery, channel or "", notice, alert, by)
            if traced is not None:
                add_steps(pipe, self.keys, traced[0], [traced[1]])
            pipe.execute()
            deliveries.schedule(delivery)
            replayed.append(delivery)
        return replayed

    def purge(self, older_than: float | None = None, now: float | None = None) -> list[str]:
        """Take dead deliveries that died more than ``older_than`` seconds ago (or all of them)
        off the list: the operator has seen them. Their records stay until they expire (30 days
        after death): as long as a record exists, the same alert is never queued again. Returns
        the ids purged."""
        latest: float | str = "+inf" if older_than is None else (time.time() if now is None else now) - older_than
        ids = [as_text(m) for m in self.redis.zrangebyscore(self.keys.deadletter(), "-inf", latest)]  # type: ignore[arg-type]
        for start in range(0, len(ids), 500):
            self.redis.zrem(self.keys.deadletter(), *ids[start:start + 500])
        return ids
