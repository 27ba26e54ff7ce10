"""The console's per-minute series (series.py) and the detection-latency histogram (metrics.py):
recorded with the counters they mirror, read back zero-filled, bounded in Redis, rendered on
/metrics. Real Redis; the REST requests through the simulator."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis as AsyncRedis
from starlette.testclient import TestClient

from b24notify.alerts import Alert, sample_alert
from b24notify.diff import ChangeKind
from b24notify.metrics import Counters, decode_counters, record_detection, render, total
from b24notify.series import (
    DAY_MINUTES,
    FAILED,
    KEEP_SECONDS,
    REST,
    SENT,
    AsyncSeries,
    Budgets,
    Series,
    budget_per_minute,
    downsample,
)
from b24notify.service.app import create_app
from b24notify.settings.rates import RateLimit
from tests.support.clock import Clock
from tests.support.pipeline import deliver_all, sync

PORTAL = "acme.bitrix24.com"
# 30 s into a minute of real time: Redis drops a hash whose deadline (its hour + 25 h) has passed.
NOW = time.time() // 60 * 60 + 30
MINUTE = 60.0


def series_keys(redis, key_prefix: str, portal: str = PORTAL, name: str = "*") -> list[bytes]:
    return sorted(redis.scan_iter(match=f"{key_prefix}:series:{portal}:{name}:*", count=1000))


def test_a_count_lands_in_its_minute_and_reads_back_zero_filled(redis, keys):
    clock = Clock(NOW)
    series = Series(redis, keys, clock)
    series.record(PORTAL, SENT)
    clock.now -= 3 * MINUTE
    series.record(PORTAL, SENT, 2)
    clock.now -= 100 * MINUTE  # outside the last hour
    series.record(PORTAL, SENT, 5)
    clock.now = NOW + 29  # still the same minute as the first count

    assert series.last(PORTAL, SENT, 5) == [0, 2, 0, 0, 1]
    last_hour = series.last(PORTAL, SENT)
    assert len(last_hour) == 60 and last_hour[-1] == 1 and last_hour[-4] == 2 and sum(last_hour) == 3
    assert series.totals(PORTAL, SENT, 60) == 3
    assert series.totals(PORTAL, SENT, 120) == 8
    assert series.last(PORTAL, FAILED, 5) == [0] * 5  # nothing recorded: zeros, not an error
    assert series.last("other.bitrix24.com", SENT, 5) == [0] * 5

    clock.now += MINUTE  # a minute later the newest count moves one place left
    assert series.last(PORTAL, SENT, 5) == [2, 0, 0, 1, 0]


def test_a_day_reads_whole_and_nothing_older(redis, keys):
    clock = Clock(time.time())  # real time: the hashes' deadlines are real
    series = Series(redis, keys, clock)
    now = clock.now
    for minutes_ago, count in ((1440, 7), (1439, 3), (700, 2), (0, 1)):
        clock.now = now - minutes_ago * MINUTE
        series.record(PORTAL, REST, count)
    clock.now = now

    day = series.last(PORTAL, REST, DAY_MINUTES)
    assert len(day) == DAY_MINUTES
    assert day[0] == 3 and day[-1] == 1 and day[DAY_MINUTES - 1 - 700] == 2  # 1440 minutes ago: outside
    assert sum(day) == 6
    chart = series.chart(PORTAL)  # every series of the portal, one round trip
    assert chart[REST] == day and chart[SENT] == [0] * DAY_MINUTES and chart[FAILED] == [0] * DAY_MINUTES
    assert downsample(day, 15)[-1] == 1 and len(downsample(day, 15)) == 96 and sum(downsample(day, 15)) == 6
    assert downsample([1, 2, 3, 4, 5], 2) == [1, 5, 9]


def test_every_hash_expires_25_hours_after_its_hour_began(redis, keys, key_prefix):
    clock = Clock(time.time())
    series = Series(redis, keys, clock)
    series.record(PORTAL, SENT)
    clock.now -= 2 * 3600
    series.record(PORTAL, SENT)
    found = series_keys(redis, key_prefix)
    assert len(found) == 2
    for key in found:
        hour = int(key.decode().rsplit(":", 1)[1])
        assert redis.expiretime(key) == hour * 3600 + KEEP_SECONDS
    assert KEEP_SECONDS == 25 * 3600


def test_three_days_of_counts_every_minute_stay_bounded(redis, keys, key_prefix):
    """Redis drops a hash once its deadline has passed: a clock three days back moving to now
    leaves only the last 25 hours' hashes, each with at most 60 fields."""
    real_now = time.time()
    clock = Clock(real_now - 3 * 86400)
    counters = Counters(redis, keys, clock)
    while clock.now <= real_now:
        counters.inc("b24notify_notifications", portal=PORTAL, channel="chat", outcome="sent")
        counters.inc("b24notify_notifications", portal=PORTAL, channel="chat", outcome="retry")
        clock.now += MINUTE
    for name in (SENT, FAILED):
        found = series_keys(redis, key_prefix, name=name)
        assert 25 <= len(found) <= 26, len(found)
        assert all(redis.hlen(key) <= 60 for key in found)
    memory = sum(int(redis.memory_usage(key) or 0) for key in series_keys(redis, key_prefix))
    assert memory < 2 * 26 * 1024, memory  # ~0.5 KiB per hash: ~40 KiB per portal for three series
    assert Series(redis, keys, Clock(real_now)).totals(PORTAL, SENT, DAY_MINUTES) == DAY_MINUTES


def test_counters_record_the_series_they_mirror(redis, keys):
    clock = Clock(NOW)
    counters = Counters(redis, keys, clock)
    for outcome in ("sent", "sent", "retry", "dead", "deferred"):
        counters.inc("b24notify_notifications", portal=PORTAL, channel="email", outcome=outcome)
    counters.inc("b24notify_rest_calls", portal=PORTAL, method="batch", outcome="ok", also="b24notify_rest_requests")
    counters.inc("b24notify_rest_calls", portal=PORTAL, method="tasks.task.get", outcome="ok")  # a sub-call
    counters.inc("b24notify_changes", kind="new")  # no portal: no series
    series = Series(redis, keys, clock)
    assert series.last(PORTAL, SENT, 1) == [2]
    assert series.last(PORTAL, FAILED, 1) == [2]  # retry + dead; deferred is no failure
    assert series.last(PORTAL, REST, 1) == [1]
    counted = decode_counters(redis.hgetall(keys.metrics()))
    assert total(counted, "b24notify_rest_calls", portal=PORTAL) == 2
    assert total(counted, "b24notify_rest_requests", portal=PORTAL, method="batch", outcome="ok") == 1
    assert total(counted, "b24notify_notifications", portal=PORTAL, outcome="deferred") == 1


def test_a_batch_is_one_request_however_many_calls_it_carries(ctx, user, redis, keys):
    tasks = [user.add_task(f"Task {i}") for i in range(3)]
    ctx.client.batch({f"t{t}": ("tasks.task.get", {"taskId": t}) for t in tasks})
    ctx.client.call("tasks.task.get", {"taskId": tasks[0]})
    counted = decode_counters(redis.hgetall(keys.metrics()))
    assert total(counted, "b24notify_rest_calls", portal=ctx.portal) == 5  # the batch, its 3 calls, one call
    assert total(counted, "b24notify_rest_requests", portal=ctx.portal) == 2
    assert total(counted, "b24notify_rest_requests", portal=ctx.portal, method="batch") == 1
    assert Series(redis, keys).totals(ctx.portal, REST, 2) == 2


def test_the_async_reader_reads_what_the_workers_wrote(redis, keys, redis_url):
    clock = Clock(NOW)
    Series(redis, keys, clock).record(PORTAL, SENT, 4)

    async def read() -> tuple[list[int], int, dict[str, list[int]]]:
        client = AsyncRedis.from_url(redis_url)
        try:
            reader = AsyncSeries(client, keys, clock)
            return (await reader.last(PORTAL, SENT, 3), await reader.totals(PORTAL, SENT, 60),
                    await reader.chart(PORTAL, 2))
        finally:
            await client.aclose()

    last, in_hour, chart = asyncio.run(read())
    assert last == [0, 0, 4] and in_hour == 4 and chart == {REST: [0, 0], SENT: [0, 4], FAILED: [0, 0]}


def test_the_budget_line_is_the_drain_less_the_reserve():
    assert budget_per_minute(RateLimit(2, 50), 0.2) == 96.0
    spec = dataclasses.make_dataclass("Spec", ["key", "rate_limit"])
    budgets = Budgets.of("2/50", 0.25, [spec("big.bitrix24.com", "5/250")])
    assert budgets.per_minute("big.bitrix24.com") == 225.0
    assert budgets.per_second("small.bitrix24.com") == 1.5


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def edited(alert: Alert, updated: datetime | None) -> Alert:
    return dataclasses.replace(alert, result=dataclasses.replace(alert.result, updated_at=updated))


def detection_text(redis, keys) -> str:
    return render(decode_counters(redis.hgetall(keys.metrics())), {}).decode()


def histogram(text: str, **labels: str) -> tuple[dict[str, float], float, float]:
    """(cumulative buckets by le, sum, count) of b24notify_detection_seconds for these labels."""
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "b24notify_detection_seconds"]
    mine = [s for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]
    buckets = {s.labels["le"]: s.value for s in mine if s.name.endswith("_bucket")}
    (total_sum,) = [s.value for s in mine if s.name.endswith("_sum")]
    (count,) = [s.value for s in mine if s.name.endswith("_count")]
    return buckets, total_sum, count


def test_detection_latency_is_a_histogram_per_portal_and_channel(redis, keys):
    new = sample_alert(ChangeKind.NEW)  # created 2025-07-15T14:30:00+02:00
    created = at("2025-07-15T14:30:00+02:00")
    closed = edited(sample_alert(ChangeKind.CLOSED), datetime(2025, 8, 1, tzinfo=UTC))
    unknown = edited(sample_alert(ChangeKind.EDITED), None)
    pipe = redis.pipeline()
    record_detection(pipe, keys, PORTAL, "chat", [new], now=created + 0.5)
    record_detection(pipe, keys, PORTAL, "chat", [new], now=created + 1.0)  # "le" includes the bound
    record_detection(pipe, keys, PORTAL, "chat", [new, new], now=created + 4)  # a digest: one per change
    record_detection(pipe, keys, PORTAL, "chat", [new], now=created + 7200)
    record_detection(pipe, keys, PORTAL, "chat", [new], now=created - 3)  # the portal's clock ahead: 0
    record_detection(pipe, keys, PORTAL, "email", [closed], now=at("2025-08-01T00:00:40+00:00"))
    record_detection(pipe, keys, PORTAL, "email", [unknown], now=1000.0, fallback=990.0)  # the sync's time
    record_detection(pipe, keys, PORTAL, "email", [unknown], now=1000.0)  # nothing known: not observed
    pipe.execute()

    text = detection_text(redis, keys)
    buckets, chat_sum, chat_count = histogram(text, portal=PORTAL, channel="chat")
    assert buckets == {"1.0": 3, "2.0": 3, "5.0": 5, "10.0": 5, "30.0": 5, "60.0": 5, "300.0": 5, "1800.0": 5,
                       "+Inf": 6}
    assert chat_count == 6 and abs(chat_sum - (0.5 + 1 + 4 + 4 + 7200 + 0)) < 0.01
    buckets, email_sum, email_count = histogram(text, portal=PORTAL, channel="email")
    assert buckets["10.0"] == 1 and buckets["30.0"] == 1 and buckets["60.0"] == 2 and buckets["+Inf"] == 2
    assert email_count == 2 and abs(email_sum - 50) < 0.01
    assert "# TYPE b24notify_detection_seconds histogram" in text


def test_a_sent_alert_is_observed_and_shown_on_metrics(ctx, settings, user, redis, keys):
    task = user.add_task()
    sync(ctx, task)
    user.comment(task, "Signed", as_result=True)
    sync(ctx, task)
    assert sorted(deliver_all(ctx)) == ["sent", "sent"]
    with TestClient(create_app(settings)) as web:
        text = web.get("/metrics").text
    for channel in ("chat", "email"):
        buckets, seconds, count = histogram(text, portal=ctx.portal, channel=channel)
        assert count == 1 and buckets["+Inf"] == 1 and 0 <= seconds < 60
        assert buckets["60.0"] == 1  # found and sent within the minute
    series = Series(redis, keys)
    assert series.totals(ctx.portal, SENT, 2) == 2 and series.totals(ctx.portal, FAILED, 2) == 0
    assert series.totals(ctx.portal, REST, 2) >= 3  # the result lists, the task, the chat message
