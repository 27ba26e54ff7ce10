"""The dead-letter list: deliveries that failed for good, with their reasons; list and replay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis

from b24notify.dueset import DueSet
from b24notify.keys import DELIVERIES, Keys, as_text


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

    def entries(self, limit: int = 100) -> list[DeadDelivery]:
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

    def replay(self, delivery_ids: list[str] | None = None) -> list[str]:
        """Queue dead deliveries again (all of them when ``delivery_ids`` is None). Returns the ids
        queued; ids that are not dead, or whose record expired, are skipped."""
        wanted = delivery_ids if delivery_ids is not None else [
            as_text(m) for m in self.redis.zrange(self.keys.deadletter(), 0, -1)  # type: ignore[arg-type]
        ]
        deliveries = DueSet(self.redis, self.keys, DELIVERIES)
        replayed = []
        for delivery in wanted:
            key = self.keys.delivery(delivery)
            if self.redis.zscore(self.keys.deadletter(), delivery) is None or not self.redis.exists(key):
                continue
            pipe = self.redis.pipeline()
            pipe.hset(key, mapping={"status": "pending", "attempts": 0})
            pipe.persist(key)
            pipe.zrem(self.keys.deadletter(), delivery)
            pipe.execute()
            deliveries.schedule(delivery)
            replayed.append(delivery)
        return replayed
