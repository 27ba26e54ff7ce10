"""Deliver one queued notification (an outbox entry) through its channel.

Retries follow the configured schedule (B24NOTIFY_DELIVERY_RETRY_SECONDS); when it runs out, or
at once for a permanent error, the delivery goes to the dead-letter list with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from b24notify.alerts import Alert
from b24notify.channels.base import DeliveryError
from b24notify.dueset import Claim
from b24notify.keys import as_text
from b24notify.workers.context import WorkerContext

log = logging.getLogger(__name__)

KEEP_FINISHED_SECONDS = 30 * 24 * 3600  # a sent delivery is remembered this long: no resend


@dataclass(frozen=True)
class DeliveryOutcome:
    delivery_id: str
    status: str  # sent | retry | dead | skipped | stale


def deliver(ctx: WorkerContext, claim: Claim) -> DeliveryOutcome:
    key = ctx.keys.delivery(claim.member)
    record = {as_text(k): as_text(v) for k, v in ctx.redis.hgetall(key).items()}
    if not record or record.get("status") in ("sent", "dead"):
        ctx.deliveries.complete(claim)
        return DeliveryOutcome(claim.member, "skipped")
    channel_name = record["channel"]
    alert = Alert.from_json(record["alert"])
    channel = ctx.channels.get(channel_name)
    if channel is None:
        return _dead(ctx, claim, key, alert, channel_name, f"channel {channel_name} is not configured")
    try:
        channel.send(alert)
    except DeliveryError as exc:
        if not exc.retryable:
            return _dead(ctx, claim, key, alert, channel_name, str(exc))
        attempts = int(ctx.redis.hincrby(key, "attempts", 1))
        ctx.redis.hset(key, "last_error", str(exc)[:500])
        schedule = ctx.settings.b24notify_delivery_retry_seconds
        if attempts > len(schedule):
            return _dead(ctx, claim, key, alert, channel_name, f"gave up after {attempts} attempts: {exc}")
        delay = schedule[attempts - 1]
        ctx.deliveries.retry(claim, ctx.clock() + delay)
        ctx.counters.inc("b24notify_notifications", channel=channel_name, outcome="retry")
        log.warning("event=notify.retry channel=%s task=%d result=%d kind=%s attempt=%d delay=%.0f error=%r",
                    channel_name, alert.task.id, alert.result.id, alert.kind.value, attempts, delay, str(exc))
        return DeliveryOutcome(claim.member, "retry")
    if not ctx.deliveries.holds(claim):
        # Sent, but our lease expired meanwhile and another worker may be sending too: the one
        # window where a repeat can happen (docs/guarantees.md). Record it anyway.
        log.warning("event=notify.late channel=%s delivery=%s", channel_name, claim.member)
    pipe = ctx.redis.pipeline()
    pipe.hset(key, mapping={"status": "sent", "sent_at": str(ctx.clock())})
    pipe.expire(key, KEEP_FINISHED_SECONDS)
    pipe.execute()
    ctx.deliveries.complete(claim)
    ctx.counters.inc("b24notify_notifications", channel=channel_name, outcome="sent")
    log.info("event=notify.sent channel=%s task=%d result=%d kind=%s", channel_name, alert.task.id,
             alert.result.id, alert.kind.value)
    return DeliveryOutcome(claim.member, "sent")


def _dead(ctx: WorkerContext, claim: Claim, key: str, alert: Alert, channel: str, reason: str) -> DeliveryOutcome:
    pipe = ctx.redis.pipeline()
    pipe.hset(key, mapping={"status": "dead", "last_error": reason[:500], "dead_at": str(ctx.clock())})
    pipe.expire(key, KEEP_FINISHED_SECONDS)
    pipe.zadd(ctx.keys.deadletter(), {claim.member: ctx.clock()})
    pipe.execute()
    ctx.deliveries.complete(claim)
    ctx.counters.inc("b24notify_notifications", channel=channel, outcome="dead")
    log.error("event=notify.dead channel=%s task=%d result=%d kind=%s reason=%r", channel, alert.task.id,
              alert.result.id, alert.kind.value, reason)
    return DeliveryOutcome(claim.member, "dead")
