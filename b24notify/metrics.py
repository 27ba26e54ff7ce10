"""Fleet-wide counters kept in one Redis hash, so that ``GET /metrics`` on any web process shows
what every worker did (workers run on other machines and have no port of their own).

A field is ``name|label=value|label=value``; label values never contain ``|`` or ``=`` because
they come from our own small vocabularies (event types, methods, error codes, channels).

A histogram (``HISTOGRAMS``) lives in the same hash: one field per bucket it fell in (``le``, not
cumulative: one HINCRBY per observation) and its sum in milliseconds (``name:sum_ms``, an integer);
``render`` makes the cumulative ``_bucket``, ``_sum`` and ``_count`` series Prometheus expects.
Some counters also count in a per-minute series for the console's charts (series.py), in the same
round trip.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from b24notify.alerts import Alert
from b24notify.diff import ChangeKind
from b24notify.keys import DELIVERIES, TASKS, Keys
from b24notify.rest.budget import RateBudget
from b24notify.rest.guard import PortalGuard
from b24notify.rest.operating import OperatingBudget
from b24notify.series import Budgets, record, series_of

HELP = {
    "b24notify_events": "Bitrix24 events received, by type and outcome",
    "b24notify_jobs": "Task sync runs, by outcome",
    "b24notify_rest_calls": "Bitrix24 REST calls, by method and outcome",
    "b24notify_notifications": "Notification deliveries, by channel and outcome",
    "b24notify_changes": "Result changes found, by kind",
    "b24notify_alerts_skipped": "Alerts not sent to a person, by reason: muted, kind and channel (their "
                                "preferences), actor (they made the change), inactive, no_email",
    "b24notify_state_losses": "Times the state in Redis was found lost (epoch gone or changed); "
                              "b24notify started over silently each time",
    "b24notify_rest_requests": "Requests sent to the portal's REST API (one unit of its rate budget each: a "
                               "batch is one), by method and outcome",
    "b24notify_detection_seconds": "Seconds from a result's change (createdAt for a new result, updatedAt for an "
                                   "edited or closed one) to its alert being sent, by portal and channel",
}
GAUGE_HELP = {
    "b24notify_tasks_due": "Tasks in the due set (due now or later)",
    "b24notify_tasks_ready": "Tasks due now and waiting for a worker",
    "b24notify_tasks_running": "Tasks leased by a worker",
    "b24notify_tasks_oldest_due_seconds": "How long the task due longest ago has waited (0: none waits)",
    "b24notify_deliveries_due": "Deliveries in the due set (due now or later)",
    "b24notify_deliveries_ready": "Deliveries due now and waiting for a worker",
    "b24notify_deliveries_running": "Deliveries leased by a worker",
    "b24notify_deliveries_oldest_due_seconds": "How long the delivery due longest ago has waited (0: none waits)",
    "b24notify_deadletter": "Deliveries in the dead-letter list",
    "b24notify_portal_paused": "1 while calls to the portal are stopped after a permanent error (see /readyz)",
    "b24notify_rest_budget_per_second": "REST requests per second b24notify allows itself on the portal: its rate "
                                        "limit's drain minus the reserve (B24_RATE_RESERVE)",
}
DETECTION = "b24notify_detection_seconds"
HISTOGRAMS: Mapping[str, tuple[float, ...]] = {DETECTION: (1, 2, 5, 10, 30, 60, 300, 1800, math.inf)}
SUM_SUFFIX = ":sum_ms"  # a histogram's sum, in integer milliseconds (HINCRBY, like every other field)
_UNSAFE = re.compile(r"[|=\s]")


def counter_field(name: str, **labels: str) -> str:
    return _field(name, tuple(sorted(labels.items())))


@functools.lru_cache(maxsize=1024)  # the web builds one per accepted event, from a small vocabulary
def _field(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    parts = [name] + [f"{k}={_UNSAFE.sub('_', str(v))}" for k, v in labels]
    return "|".join(parts)


def parse_field(field: str) -> tuple[str, dict[str, str]]:
    name, *pairs = field.split("|")
    labels = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    return name, labels


class Counters:
    """Increment fleet-wide counters: one round trip each, the per-minute series a counter mirrors
    (series.py) included."""

    def __init__(self, redis: Redis, keys: Keys, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = keys
        self.key = keys.metrics()
        self.clock = clock

    def inc(self, name: str, amount: int = 1, *, also: str = "", **labels: str) -> None:
        """``also``: a second counter with the same labels, in the same round trip."""
        names = (name, also) if also else (name,)
        series = [s for s in (series_of(n, labels) for n in names) if s is not None]
        if len(names) == 1 and not series:
            self.redis.hincrby(self.key, counter_field(name, **labels), amount)
            return
        pipe = self.redis.pipeline(transaction=False)
        for counter in names:
            pipe.hincrby(self.key, counter_field(counter, **labels), amount)
        now = self.clock()
        for series_name in series:
            record(pipe, self.keys, labels["portal"], series_name, amount, now)
        pipe.execute()

    def forget_portal(self, portal: str) -> int:
        """Remove every counter labelled with this portal (after its uninstall): the hash holds
        one field per label combination, and a portal that left must not stay in it for good."""
        label = counter_field("", portal=portal).lstrip("|")
        fields = [f for f in (_text(k) for k in self.redis.hkeys(self.key)) if label in f.split("|")[1:]]
        return int(self.redis.hdel(self.key, *fields)) if fields else 0


_Samples = list[tuple[dict[str, str], float]]


class CountedGuard(PortalGuard):
    """A portal's guard that also tells the REST observer which observations were requests to the
    portal. The client observes a batch's sub-calls one by one after the batch's own request; only
    a call that passed ``before`` (which spends the rate budget) was a request. Counted per thread:
    one portal's client serves the jobs and the dispatcher's reconciliation tick."""

    def __init__(self, rate: RateBudget, operating: OperatingBudget) -> None:
        super().__init__(rate, operating)
        self._sent = threading.local()

    @classmethod
    def of(cls, guard: PortalGuard) -> CountedGuard:
        return cls(guard.rate, guard.operating)

    def before(self, method: str) -> None:
        super().before(method)
        self._sent.count = getattr(self._sent, "count", 0) + 1

    def took_request(self) -> bool:
        """True once per request that went out (call it once per observation)."""
        count: int = getattr(self._sent, "count", 0)
        if count:
            self._sent.count = count - 1
        return count > 0


def change_time(alert: Alert) -> float | None:
    """When the change an alert tells of happened, by the portal's clock (None: it does not say)."""
    result = alert.result
    if alert.kind is ChangeKind.NEW:
        return result.created_at.timestamp()
    return result.updated_at.timestamp() if result.updated_at is not None else None


def record_detection(pipe: Any, keys: Keys, portal: str, channel: str, alerts: Iterable[Alert], *, now: float,
                     fallback: float = 0.0) -> None:
    """Queue one detection-latency observation per alert on ``pipe`` (a pipeline about to run: no
    round trip of its own). ``fallback``: when the change's time is unknown, the time its sync
    found it (the delivery record's ``created_at``); neither known, the alert is not observed."""
    for alert in alerts:
        changed = change_time(alert)
        if changed is None:
            changed = fallback or None
        if changed is not None:
            observe(pipe, keys, DETECTION, max(0.0, now - changed), portal=portal, channel=channel)


def observe(pipe: Any, keys: Keys, name: str, value: float, **labels: str) -> None:
    """Queue one observation of the histogram ``name`` (two HINCRBYs) on a sync or async pipeline."""
    bound = next(b for b in HISTOGRAMS[name] if value <= b)
    pipe.hincrby(keys.metrics(), counter_field(name, le=_le(bound), **labels), 1)
    pipe.hincrby(keys.metrics(), counter_field(name + SUM_SUFFIX, **labels), round(value * 1000))


class RedisCountersCollector(Collector):
    """Exposes the Redis-held counters and histograms plus a few gauges, read fresh on every scrape.
    A gauge's key is a plain name or a field with labels (``counter_field``)."""

    def __init__(self, counters: Mapping[str, float], gauges: Mapping[str, float]) -> None:
        self.counters = counters
        self.gauges = gauges

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        grouped = _grouped(self.counters)
        for name, samples in sorted(grouped.items()):
            if name in HISTOGRAMS:
                yield _histogram(name, samples, grouped.get(name + SUM_SUFFIX, []))
                continue
            if name.endswith(SUM_SUFFIX) and name[:-len(SUM_SUFFIX)] in HISTOGRAMS:
                continue
            label_names = sorted({k for labels, _ in samples for k in labels})
            family = CounterMetricFamily(name, HELP.get(name, name), labels=label_names)
            for labels, value in samples:
                family.add_metric([labels.get(k, "") for k in label_names], value)
            yield family
        for name, samples in sorted(_grouped(self.gauges).items()):
            label_names = sorted({k for labels, _ in samples for k in labels})
            gauge = GaugeMetricFamily(name, GAUGE_HELP.get(name, name.replace("_", " ")), labels=label_names)
            for labels, value in samples:
                gauge.add_metric([labels.get(k, "") for k in label_names], value)
            yield gauge


def _le(bound: float) -> str:
    """A bucket's bound as Prometheus writes it: "1.0", "300.0", "+Inf"."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _grouped(values: Mapping[str, float]) -> dict[str, _Samples]:
    grouped: dict[str, _Samples] = defaultdict(list)
    for field, value in values.items():
        name, labels = parse_field(field)
        grouped[name].append((labels, value))
    return grouped


def _histogram(name: str, buckets: _Samples, sums: _Samples) -> HistogramMetricFamily:
    bounds = HISTOGRAMS[name]
    label_names = sorted({k for labels, _ in buckets for k in labels} - {"le"})
    counts: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0] * len(bounds))
    for labels, value in buckets:
        try:
            le = float(labels.get("le", "+Inf"))
        except ValueError:
            continue
        row = counts[tuple(labels.get(k, "") for k in label_names)]
        for i, bound in enumerate(bounds):  # cumulative: every bucket at or above the one it fell in
            if le <= bound:
                row[i] += value
    total_ms = {tuple(labels.get(k, "") for k in label_names): value for labels, value in sums}
    family = HistogramMetricFamily(name, HELP.get(name, name), labels=label_names)
    for key, row in sorted(counts.items()):
        family.add_metric(list(key), [(_le(b), c) for b, c in zip(bounds, row, strict=True)],
                          total_ms.get(key, 0.0) / 1000.0)
    return family


def decode_counters(raw: Mapping[bytes | str, bytes | str]) -> dict[str, int]:
    return {_text(k): int(_text(v)) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def render(counters: Mapping[str, int], gauges: Mapping[str, float]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCountersCollector(counters, gauges))
    return generate_latest(registry)


async def gather(redis: AsyncRedis, keys: Keys, portals: Sequence[str], budgets: Budgets | None,
                 now: float) -> tuple[dict[str, int], dict[str, float]]:
    """The counters and the gauges for ``GET /metrics``, in one round trip."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.metrics())
    for name in (TASKS, DELIVERIES):
        pipe.zcard(keys.due(name))
        pipe.zcard(keys.lease(name))
        pipe.zcount(keys.due(name), "-inf", now)
        pipe.zrangebyscore(keys.due(name), "-inf", now, start=0, num=1, withscores=True)
    pipe.zcard(keys.deadletter())
    if portals:
        pipe.mget([keys.halted(p) for p in portals])
    answers = await pipe.execute()
    raw, queues, dead = answers[0], answers[1:9], answers[9]
    halted = answers[10] if portals else []
    gauges: dict[str, float] = {"b24notify_deadletter": dead}
    for i, name in enumerate((TASKS, DELIVERIES)):
        due, leased, ready, oldest = queues[4 * i:4 * i + 4]
        gauges[f"b24notify_{name}_due"] = due
        gauges[f"b24notify_{name}_running"] = leased
        gauges[f"b24notify_{name}_ready"] = ready
        gauges[f"b24notify_{name}_oldest_due_seconds"] = max(0.0, now - float(oldest[0][1])) if oldest else 0.0
    for portal, reason in zip(portals, halted, strict=True):
        gauges[counter_field("b24notify_portal_paused", portal=portal)] = 0 if reason is None else 1
        if budgets is not None:
            gauges[counter_field("b24notify_rest_budget_per_second", portal=portal)] = budgets.per_second(portal)
    return decode_counters(raw), gauges


def total(counters: Mapping[str, int], name: str, **labels: str) -> int:
    """Sum of a counter over the samples matching ``labels`` (for tests and the CLI)."""
    result = 0
    for field, value in counters.items():
        fname, flabels = parse_field(field)
        if fname == name and all(flabels.get(k) == v for k, v in labels.items()):
            result += value
    return result

