"""Deliver queued notifications (outbox entries) through their channels.

Retries follow the configured schedule (B24NOTIFY_DELIVERY_RETRY_SECONDS), whose first step a
passing fault replaces with a few retries within seconds (workers/retries.py); when it runs out,
or at once for a permanent error, the delivery goes to the dead-letter list with its reason. A wait for our own
limits (the fleet's REST budget) is no attempt: the delivery runs again when the wait is over.
Chat messages due together go out in one ``batch`` request (one unit of the portal's rate budget).

Sends keep within the job's deadline (workers/deadline.py): one starts only when the channel's
worst case fits, and the rest stay due for the next job.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline

from b24notify.alerts import Alert
from b24notify.channels.base import Channel, DeliveryDeferred, DeliveryError
from b24notify.channels.chat import known_wait
from b24notify.channels.notify import notification_tag
from b24notify.dueset import Claim
from b24notify.keys import Keys, as_text
from b24notify.metrics import record_detection
from b24notify.notices import Notice, Target
from b24notify.render.email import message_id
from b24notify.rest.client import MAX_BATCH
from b24notify.rest.errors import B24Error
from b24notify.trace import Step, add_steps, delivery_step
from b24notify.workers.context import WorkerContext
from b24notify.workers.deadline import JobDeadline, alarm_deferred
from b24notify.workers.retries import Failures, next_try

log = logging.getLogger(__name__)

KEEP_FINISHED_SECONDS = 30 * 24 * 3600  # a sent delivery is remembered this long: no resend
REPLICA_BEHIND_RETRY_SECONDS = 2.0  # a chat send whose in-flight mark no replica acknowledged


@dataclass(frozen=True)
class DeliveryOutcome:
    delivery_id: str
    status: str  # sent | retry | deferred (not attempted: due again soon) | dead | skipped | stale


@dataclass(frozen=True)
class _Due:
    claim: Claim
    key: str
    channel: str
    notice: Notice
    in_flight: bool = False  # an earlier attempt started and its outcome is unknown
    created_at: float = 0.0  # when its sync queued it (the record's created_at): detection's fallback
    attempts: int = 0  # failed attempts before this one (the record's), for the trace

    @property
    def alert(self) -> Alert:
        return self.notice.first


def record_notice(record: Mapping[str, str], ctx: WorkerContext) -> Notice | None:
    """The notice a delivery record holds. A record queued before routing (issue 9) holds one
    alert and a channel name: it goes where that channel went then (NOTIFY_CHAT, NOTIFY_EMAIL)."""
    if "notice" in record:
        return Notice.from_json(record["notice"])
    if "alert" not in record:
        return None
    alert = Alert.from_json(record["alert"])
    if record.get("channel") == "chat" and ctx.spec.notify_chat:
        return Notice((alert,), Target("chat", ctx.spec.notify_chat), ctx.spec.language)
    if record.get("channel") == "email" and ctx.spec.notify_email:
        return Notice((alert,), Target("email", ",".join(ctx.spec.notify_email)), ctx.spec.language)
    return None


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
                 records: Mapping[str, dict[str, str]] | None = None, *,
                 deadline: JobDeadline | None = None) -> list[DeliveryOutcome]:
    outcomes: dict[str, DeliveryOutcome] = {}
    by_channel: dict[str, list[_Due]] = {}
    deadline = deadline or JobDeadline()
    if records is None:
        records = load_records(ctx.redis, ctx.keys, claims)
    # Runs of a delivery that never finished (its worker was killed or hung: the reaper's strikes).
    # One that keeps taking its worker down goes to the dead-letter list instead of looping.
    strikes = ctx.deliveries.strikes([c.member for c in claims]) if claims else {}
    skipped: list[Step] = []
    for claim in claims:
        key = ctx.keys.delivery(claim.member)
        record = records.get(claim.member, {})
        if not record or record.get("status") in ("sent", "dead"):
            ctx.deliveries.complete(claim)
            outcomes[claim.member] = DeliveryOutcome(claim.member, "skipped")
            skipped += _skipped_step(ctx, claim, record)
            continue
        notice = record_notice(record, ctx)
        if notice is None:
            ctx.deliveries.complete(claim)
            log.error("event=notify.unreadable delivery=%s", claim.member[:200])
            outcomes[claim.member] = DeliveryOutcome(claim.member, "skipped")
            continue
        due = _Due(claim, key, record.get("channel") or notice.target.channel, notice, bool(record.get("in_flight")),
                   float(record.get("created_at") or 0.0), int(record.get("attempts") or 0))
        died = strikes.get(claim.member, 0)
        if died >= ctx.settings.b24notify_task_max_attempts:
            outcomes[claim.member] = _dead(ctx, due, f"its sends never finished {died} times in a row "
                                                     "(the worker was killed or hung while sending it)")
            continue
        by_channel.setdefault(due.channel, []).append(due)
    _trace(ctx, skipped)
    for name, items in by_channel.items():
        channel = ctx.channels.get(name)
        if channel is None:
            for due in items:
                outcomes[due.claim.member] = _dead(ctx, due, f"channel {name} is not configured")
            continue
        batchable = getattr(channel, "send_many", None) is not None
        size = MAX_BATCH if batchable else 1
        sends = [items[i:i + size] for i in range(0, len(items), size)]
        for number, send in enumerate(sends):
            # A lookup before the send (an earlier attempt's outcome is unknown) is one more request.
            lookups = 1 if any(due.in_flight for due in send) and hasattr(channel, "find_posted") else 0
            if not deadline.admits(channel.send_seconds * (1 + lookups)):
                left = [d for later in sends[number:] for d in later]
                for due in left:
                    outcomes[due.claim.member] = _leave_due(ctx, due)
                log.info("event=notify.left_for_next_job channel=%s deliveries=%d time_left=%.1f", name, len(left),
                         deadline.left())
                break
            _send(ctx, channel, send, outcomes, deadline)
    return [outcomes[c.member] for c in claims]


def _send(ctx: WorkerContext, channel: Channel, items: list[_Due], outcomes: dict[str, DeliveryOutcome],
          deadline: JobDeadline) -> None:
    """Send ``items`` (one alert, or one batch of chat messages) and record each outcome."""
    # Right before sending, each lease is renewed for a full term: a lease lost meanwhile
    # (reaped, now someone else's) means someone else sends it, and a send never starts with
    # only a sliver of its lease left (a repeat would need the send to outlast a whole term).
    items = _not_posted_yet(ctx, channel, _still_ours(ctx, items, outcomes), outcomes)
    if not items:
        return
    end = deadline.send_end()
    items = _mark_in_flight(ctx, channel, items, outcomes)
    if not items:
        return
    # A channel that can look before it sends again, or whose repeat replaces the first (a
    # personal notification's TAG), may be cut mid-send.
    lookable = getattr(channel, "find_posted", None) is not None or bool(getattr(channel, "repeat_safe", False))
    with ExitStack() as held:
        # The job's time limit waits until the outcomes are recorded: from the send on for a
        # channel that cannot look before it sends again (e-mail: a mail accepted but not recorded
        # would go twice); from the answer on for one that can (chat: cut mid-send, the next
        # attempt finds the message in the dialog).
        if not lookable:
            held.enter_context(alarm_deferred())
        send_many = getattr(channel, "send_many", None)
        if send_many is not None and len(items) > 1:
            errors: list[DeliveryError | None] = send_many([due.notice for due in items])
        else:
            errors = [_send_one(channel, items[0].notice, end)]
        if lookable:
            held.enter_context(alarm_deferred())
        _record_sent(ctx, [due for due, error in zip(items, errors, strict=True) if error is None])
        for due, error in zip(items, errors, strict=True):
            outcomes[due.claim.member] = _settle(ctx, due, error)


def _not_posted_yet(ctx: WorkerContext, channel: object, items: list[_Due],
                    outcomes: dict[str, DeliveryOutcome]) -> list[_Due]:
    """Drop the deliveries an earlier attempt may have made (it died, or got no answer) and that
    the channel confirms it has: they are recorded as sent, not sent again."""
    doubtful = [due for due in items if due.in_flight]
    find_posted = getattr(channel, "find_posted", None)
    if not doubtful or find_posted is None:
        return items
    try:
        posted: set[str] = find_posted([due.notice for due in doubtful])
    except B24Error as exc:
        wait = known_wait(exc)
        if wait is not None:
            # Our own budget says not yet: the doubtful ones wait for it (no attempt), still marked
            # in flight so that they look first next time; the rest go.
            for due in doubtful:
                outcomes[due.claim.member] = _defer(ctx, due, wait, f"lookup {exc.code}", keep_in_flight=True)
            return [due for due in items if not due.in_flight]
        # Cannot look: send. A possible repeat beats a certain loss.
        log.warning("event=notify.lookup_failed channel=%s code=%s", getattr(channel, "name", "?"), exc.code)
        return items
    found = [due for due in doubtful if due.notice.key in posted]
    _record_sent(ctx, found)
    for due in found:
        log.warning("event=notify.already_posted channel=%s delivery=%s", due.channel, due.claim.member)
        outcomes[due.claim.member] = _settle(ctx, due, None)
    return [due for due in items if due.notice.key not in posted]


def _mark_in_flight(ctx: WorkerContext, channel: object, items: list[_Due],
                    outcomes: dict[str, DeliveryOutcome]) -> list[_Due]:
    """Mark the deliveries in flight and return those that may be sent now. With a replica, a send
    waits until the replica holds the mark (Redis WAIT): a failover right after the send then
    promotes a replica that knows to look before sending again (docs/guarantees.md)."""
    if getattr(channel, "find_posted", None) is None:
        return items  # nothing to look up later (e-mail: the stable Message-ID marks a repeat instead)
    pipe = ctx.redis.pipeline(transaction=False)
    for due in items:
        pipe.hset(due.key, "in_flight", str(ctx.clock()))
    waits = ctx.replica_wait.add_to(pipe)
    answers = pipe.execute()
    if not waits or ctx.replica_wait.held(int(answers[-1]), ctx.redis):
        return items
    log.warning("event=notify.replica_behind channel=%s deliveries=%d wait_ms=%d retry=%.0f",
                getattr(channel, "name", "?"), len(items), ctx.replica_wait.timeout_ms, REPLICA_BEHIND_RETRY_SECONDS)
    for due in items:
        outcomes[due.claim.member] = _defer(ctx, due, REPLICA_BEHIND_RETRY_SECONDS, "the replica is behind")
    return []


def _record_sent(ctx: WorkerContext, items: list[_Due]) -> None:
    """One round trip for all of them, right after the channel's answer: the window in which a
    worker's death means a repeat is this write (docs/guarantees.md)."""
    if not items:
        return
    pipe = ctx.redis.pipeline()
    for due in items:
        mark_sent(pipe, due.key, portal=ctx.portal, channel=due.channel, created_at=due.created_at,
                  attempts=due.attempts, now=ctx.clock())
        record_detection(pipe, ctx.keys, ctx.portal, due.channel, due.notice.alerts, now=ctx.clock(),
                         fallback=due.created_at)
    add_steps(pipe, ctx.keys, ctx.portal, [_step(due, "sent", due.attempts + 1) for due in items])
    pipe.execute()


def mark_sent(pipe: Pipeline, key: str, *, portal: str, channel: str, created_at: float, attempts: int,
              now: float) -> None:
    """A sent delivery's record keeps what stops a repeat (it exists, its status) and its portal
    (a late claim of it finds its worker context), written afresh: kept 30 days, the notice made a
    sent record ~1.5 kB, the first limit of Redis memory (README "Capacity"); rewritten, the hash
    also goes back to Redis's compact encoding, which a deleted field alone would not."""
    pipe.delete(key)
    pipe.hset(key, mapping={"status": "sent", "sent_at": repr(now), "portal": portal, "channel": channel,
                            "created_at": repr(created_at), "attempts": attempts})
    pipe.expire(key, KEEP_FINISHED_SECONDS)


def _still_ours(ctx: WorkerContext, items: list[_Due], outcomes: dict[str, DeliveryOutcome]) -> list[_Due]:
    held = {c.member for c in ctx.deliveries.renew([d.claim for d in items], ctx.settings.b24notify_lease_seconds)}
    for due in items:
        if due.claim.member not in held:
            outcomes[due.claim.member] = DeliveryOutcome(due.claim.member, "stale")
    return [due for due in items if due.claim.member in held]


def _send_one(channel: Channel, notice: Notice, end: float | None) -> DeliveryError | None:
    try:
        channel.send(notice, deadline=end)
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
        log.info("event=notify.sent channel=%s to=%s task=%d result=%d kind=%s changes=%d", due.channel,
                 due.notice.target.key, alert.task.id, alert.result.id, alert.kind.value, len(due.notice.alerts))
        return DeliveryOutcome(due.claim.member, "sent")
    if isinstance(error, DeliveryDeferred):
        return _defer(ctx, due, error.retry_after, str(error))
    if not error.retryable:
        return _dead(ctx, due, str(error), attempt=due.attempts + 1)
    failures = _count_failure(ctx, due)
    now = ctx.deliveries.clock()
    transient = bool(getattr(error, "transient", True))
    after = next_try(ctx.settings.b24notify_delivery_retry_seconds, failures, now, transient=transient,
                     draw=random.random())
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hset(due.key, "last_error", str(error)[:500])
    if after is not None and after.early:
        pipe.hincrby(due.key, "early_failures", 1)
    if not error.uncertain:
        pipe.hdel(due.key, "in_flight")  # the channel answered: it did not take it
    if after is not None:
        add_steps(pipe, ctx.keys, ctx.portal, [_step(due, "retry", failures.count, str(error)[:500])])
    pipe.execute()
    if after is None:
        return _dead(ctx, due, f"gave up after {failures.count} attempts: {error}", attempt=failures.count)
    ctx.deliveries.retry(due.claim, ctx.clock() + after.delay)
    ctx.counters.inc("b24notify_notifications", portal=ctx.portal, channel=due.channel, outcome="retry")
    log.warning("event=notify.retry channel=%s task=%d result=%d kind=%s attempt=%d delay=%.1f error=%r",
                due.channel, alert.task.id, alert.result.id, alert.kind.value, failures.count, after.delay,
                str(error))
    return DeliveryOutcome(due.claim.member, "retry")


def _count_failure(ctx: WorkerContext, due: _Due) -> Failures:
    """Count one more failed attempt; the first of a series (a fresh delivery, or one replayed from
    the dead-letter list, which sets attempts to 0) starts the series' clock."""
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hincrby(due.key, "attempts", 1)
    pipe.hmget(due.key, "failing_since", "early_failures")
    count, (since, early) = pipe.execute()
    if int(count) == 1 or since is None:
        now = ctx.deliveries.clock()
        ctx.redis.hset(due.key, mapping={"failing_since": repr(now), "early_failures": 0})
        return Failures(int(count), 0, now)
    return Failures(int(count), int(early or 0), float(since))


def _defer(ctx: WorkerContext, due: _Due, wait: float, reason: str, *, keep_in_flight: bool = False) -> DeliveryOutcome:
    """Not sent, and not a failure: run again in ``wait`` seconds, attempts untouched."""
    pipe = ctx.redis.pipeline(transaction=False)
    if not keep_in_flight:
        pipe.hdel(due.key, "in_flight")  # our request never went out (a lookup, if any, found nothing)
    add_steps(pipe, ctx.keys, ctx.portal, [_step(due, "deferred", due.attempts, reason)])
    pipe.execute()
    ctx.deliveries.retry(due.claim, ctx.clock() + wait)
    ctx.counters.inc("b24notify_notifications", portal=ctx.portal, channel=due.channel, outcome="deferred")
    # Debug: a batch waiting for the budget would log one line per message (the metric counts them).
    log.debug("event=notify.deferred channel=%s delivery=%s wait=%.1f reason=%r", due.channel, due.claim.member,
              wait, reason)
    return DeliveryOutcome(due.claim.member, "deferred")


def _leave_due(ctx: WorkerContext, due: _Due) -> DeliveryOutcome:
    """The job has no time left for this send: the next job takes it, now. Not an attempt."""
    ctx.deliveries.retry(due.claim, ctx.clock())
    _trace(ctx, [_step(due, "deferred", due.attempts, "left for the next job: this one's time ran out")])
    return DeliveryOutcome(due.claim.member, "deferred")


def _dead(ctx: WorkerContext, due: _Due, reason: str, *, attempt: int | None = None) -> DeliveryOutcome:
    """``attempt``: the attempt that failed for good (default: none was made now)."""
    pipe = ctx.redis.pipeline()
    pipe.hset(due.key, mapping={"status": "dead", "last_error": reason[:500], "dead_at": str(ctx.clock())})
    pipe.expire(due.key, KEEP_FINISHED_SECONDS)
    pipe.zadd(ctx.keys.deadletter(), {due.claim.member: ctx.clock()})
    add_steps(pipe, ctx.keys, ctx.portal, [_step(due, "dead", due.attempts if attempt is None else attempt,
                                                 reason[:500])])
    pipe.execute()
    ctx.deliveries.complete(due.claim)
    ctx.counters.inc("b24notify_notifications", portal=ctx.portal, channel=due.channel, outcome="dead")
    log.error("event=notify.dead channel=%s task=%d result=%d kind=%s reason=%r", due.channel, due.alert.task.id,
              due.alert.result.id, due.alert.kind.value, reason)
    return DeliveryOutcome(due.claim.member, "dead")


# -- the trace (trace.py): one step per outcome, riding along in the outcome's own writes ---------------


def _step(due: _Due, outcome: str, attempt: int, error: str = "") -> Step:
    notice = due.notice
    return delivery_step(notice.task_id, delivery=due.claim.member, recipient=notice.target.key, channel=due.channel,
                         attempt=attempt, outcome=outcome, results=[a.result.id for a in notice.alerts], error=error,
                         message_id=message_ref(notice, due.channel))


def message_ref(notice: Notice, channel: str) -> str:
    """What the recipient's side knows the message by: the e-mail's Message-ID, the personal
    notification's TAG (both made from the notice's key); a chat message's id is not kept."""
    if channel == "email":
        return message_id(notice.key)
    if channel == "notify":
        return notification_tag(notice)
    return ""


def _skipped_step(ctx: WorkerContext, claim: Claim, record: Mapping[str, str]) -> list[Step]:
    """A claim of a delivery already sent or dead (a repeat): its step, when its record is readable."""
    try:
        notice = record_notice(record, ctx) if record else None
    except (ValueError, KeyError, TypeError):
        return []
    if notice is None:
        return []
    due = _Due(claim, ctx.keys.delivery(claim.member), record.get("channel") or notice.target.channel, notice,
               attempts=int(record.get("attempts") or 0))
    return [_step(due, "skipped", due.attempts, f"already {record.get('status')}")]


def _trace(ctx: WorkerContext, steps: list[Step]) -> None:
    if steps:
        pipe = ctx.redis.pipeline(transaction=False)
        add_steps(pipe, ctx.keys, ctx.portal, steps)
        pipe.execute()
