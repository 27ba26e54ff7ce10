"""Deliver queued notifications (outbox entries) through their channels.

Retries follow the configured schedule (B24NOTIFY_DELIVERY_RETRY_SECONDS); when it runs out, or
at once for a permanent error, the delivery goes to the dead-letter list with its reason. Chat
messages due together go out in one ``batch`` request (one unit of the portal's rate budget).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis import Redis

from b24notify.alerts import Alert
from b24notify.channels.base import DeliveryError
from b24notify.dueset import Claim
from b24notify.keys import Keys, as_text
from b24notify.rest.errors import B24Error
from b24notify.workers.context import WorkerContext

log = logging.getLogger(__name__)

KEEP_FINISHED_SECONDS = 30 * 24 * 3600  # a sent delivery is remembered this long: no resend


@dataclass(frozen=True)
class DeliveryOutcome:
    delivery_id: str
    status: str  # sent | retry | dead | skipped | stale


@dataclass(frozen=True)
class _Due:
    claim: Claim
    key: str
    channel: str
    alert: Alert
    in_flight: bool = False  # an earlier attempt started and its outcome is unknown


def deliver(ctx: WorkerContext, claim: Claim) -> DeliveryOutcome:
    return deliver_many(ctx, [claim])[0]


def load_records(redis: Redis, keys: Keys, claims: Sequence[Claim]) -> dict[str, dict[str, str]]:
    """The deliveries' records (alert, channel, status, …), in one round trip."""
    pipe = redis.pipeline(transaction=False)
    for claim in claims:
        pipe.hgetall(keys.delivery(claim.member))
    return {claim.member: {as_text(k): as_text(v) for k, v in raw.items()}
            for claim, raw in zip(claims, pipe.execute(), strict=True)}


def deliver_many(ctx: WorkerContext, claims: Sequence[Claim],
                 records: Mapping[str, dict[str, str]] | None = None) -> list[DeliveryOutcome]:
    outcomes: dict[str, DeliveryOutcome] = {}
    by_channel: dict[str, list[_Due]] = {}
    if records is None:
        records = load_records(ctx.redis, ctx.keys, claims)
    for claim in claims:
        key = ctx.keys.delivery(claim.member)
        record = records.get(claim.member, {})
        if not record or record.get("status") in ("sent", "dead"):
            ctx.deliveries.complete(claim)
            outcomes[claim.member] = DeliveryOutcome(claim.member, "skipped")
            continue
        due = _Due(claim, key, record["channel"], Alert.from_json(record["alert"]), bool(record.get("in_flight")))
        by_channel.setdefault(due.channel, []).append(due)
    for name, items in by_channel.items():
        channel = ctx.channels.get(name)
        if channel is None:
            for due in items:
                outcomes[due.claim.member] = _dead(ctx, due, f"channel {name} is not configured")
            continue
        # Right before sending, each lease is renewed for a full term: a lease lost meanwhile
        # (reaped, now someone else's) means someone else sends it, and a send never starts with
        # only a sliver of its lease left (a repeat would need the send to outlast a whole term).
        send_many = getattr(channel, "send_many", None)
        if send_many is not None and len(items) > 1:
            items = _not_posted_yet(ctx, channel, _still_ours(ctx, items, outcomes), outcomes)
            if items:
                _mark_in_flight(ctx, channel, items)
                errors = send_many([due.alert for due in items])
                _record_sent(ctx, [due for due, error in zip(items, errors, strict=True) if error is None])
                for due, error in zip(items, errors, strict=True):
                    outcomes[due.claim.member] = _settle(ctx, due, error)
            continue
        for due in items:
            if _not_posted_yet(ctx, channel, _still_ours(ctx, [due], outcomes), outcomes):
                _mark_in_flight(ctx, channel, [due])
                error = _send_one(channel, due.alert)
                if error is None:
                    _record_sent(ctx, [due])
                outcomes[due.claim.member] = _settle(ctx, due, error)
    return [outcomes[c.member] for c in claims]


def _not_posted_yet(ctx: WorkerContext, channel: object, items: list[_Due],
                    outcomes: dict[str, DeliveryOutcome]) -> list[_Due]:
    """Drop the deliveries an earlier attempt may have made (it died, or got no answer) and that
    the channel confirms it has: they are recorded as sent, not sent again."""
    doubtful = [due for due in items if due.in_flight]
    find_posted = getattr(channel, "find_posted", None)
    if not doubtful or find_posted is None:
        return items
    try:
        posted: set[str] = find_posted([due.alert for due in doubtful])
    except B24Error as exc:
        # Cannot look: send. A possible repeat beats a certain loss.
        log.warning("event=notify.lookup_failed channel=%s code=%s", getattr(channel, "name", "?"), exc.code)
        return items
    found = [due for due in doubtful if due.alert.key in posted]
    _record_sent(ctx, found)
    for due in found:
        log.warning("event=notify.already_posted channel=%s delivery=%s", due.channel, due.claim.member)
        outcomes[due.claim.member] = _settle(ctx, due, None)
    return [due for due in items if due.alert.key not in posted]


def _mark_in_flight(ctx: WorkerContext, channel: object, items: list[_Due]) -> None:
    if getattr(channel, "find_posted", None) is None:
        return  # nothing to look up later (e-mail: the stable Message-ID marks a repeat instead)
    pipe = ctx.redis.pipeline(transaction=False)
    for due in items:
        pipe.hset(due.key, "in_flight", str(ctx.clock()))
    pipe.execute()


def _record_sent(ctx: WorkerContext, items: list[_Due]) -> None:
    """One round trip for all of them, right after the channel's answer: the window in which a
    worker's death means a repeat is this write (docs/guarantees.md)."""
    if not items:
        return
    pipe = ctx.redis.pipeline()
    for due in items:
        pipe.hset(due.key, mapping={"status": "sent", "sent_at": str(ctx.clock())})
        pipe.hdel(due.key, "in_flight")
        pipe.expire(due.key, KEEP_FINISHED_SECONDS)
    pipe.execute()


def _still_ours(ctx: WorkerContext, items: list[_Due], outcomes: dict[str, DeliveryOutcome]) -> list[_Due]:
    held = {c.member for c in ctx.deliveries.renew([d.claim for d in items], ctx.settings.b24notify_lease_seconds)}
    for due in items:
        if due.claim.member not in held:
            outcomes[due.claim.member] = DeliveryOutcome(due.claim.member, "stale")
    return [due for due in items if due.claim.member in held]


def _send_one(channel: object, alert: Alert) -> DeliveryError | None:
    try:
        channel.send(alert)  # type: ignore[attr-defined]
    except DeliveryError as exc:
        return exc
    return None


def _settle(ctx: WorkerContext, due: _Due, error: DeliveryError | None) -> DeliveryOutcome:
    alert = due.alert
    if error is None:
        if not ctx.deliveries.complete(due.claim):
            # Sent (and recorded), but our lease expired meanwhile and another worker may have
            # sent it too: the window where a repeat can happen (docs/guarantees.md).
            log.warning("event=notify.late channel=%s delivery=%s", due.channel, due.claim.member)
        ctx.counters.inc("b24notify_notifications", portal=ctx.portal, channel=due.channel, outcome="sent")
        log.info("event=notify.sent channel=%s task=%d result=%d kind=%s", due.channel, alert.task.id,
                 alert.result.id, alert.kind.value)
        return DeliveryOutcome(due.claim.member, "sent")
    if not error.retryable:
        return _dead(ctx, due, str(error))
    attempts = int(ctx.redis.hincrby(due.key, "attempts", 1))
    ctx.redis.hset(due.key, "last_error", str(error)[:500])
    if not error.uncertain:
        ctx.redis.hdel(due.key, "in_flight")  # the channel answered: it did not take it
    schedule = ctx.settings.b24notify_delivery_retry_seconds
    if attempts > len(schedule):
        return _dead(ctx, due, f"gave up after {attempts} attempts: {error}")
    delay = schedule[attempts - 1]
    ctx.deliveries.retry(due.claim, ctx.clock() + delay)
    ctx.counters.inc("b24notify_notifications", portal=ctx.portal, channel=due.channel, outcome="retry")
    log.warning("event=notify.retry channel=%s task=%d result=%d kind=%s attempt=%d delay=%.0f error=%r",
                due.channel, alert.task.id, alert.result.id, alert.kind.value, attempts, delay, str(error))
    return DeliveryOutcome(due.claim.member, "retry")


def _dead(ctx: WorkerContext, due: _Due, reason: str) -> DeliveryOutcome:
    pipe = ctx.redis.pipeline()
    pipe.hset(due.key, mapping={"status": "dead", "last_error": reason[:500], "dead_at": str(ctx.clock())})
    pipe.expire(due.key, KEEP_FINISHED_SECONDS)
    pipe.zadd(ctx.keys.deadletter(), {due.claim.member: ctx.clock()})
    pipe.execute()
    ctx.deliveries.complete(due.claim)
    ctx.counters.inc("b24notify_notifications", portal=ctx.portal, channel=due.channel, outcome="dead")
    log.error("event=notify.dead channel=%s task=%d result=%d kind=%s reason=%r", due.channel, due.alert.task.id,
              due.alert.result.id, due.alert.kind.value, reason)
    return DeliveryOutcome(due.claim.member, "dead")
