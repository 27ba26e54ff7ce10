"""Fleet-wide counters kept in one Redis hash, so that ``GET /metrics`` on any web process shows
what every worker did (workers run on other machines and have no port of their own).

A field is ``name|label=value|label=value``; label values never contain ``|`` or ``=`` because
they come from our own small vocabularies (event types, methods, error codes, channels).
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis

from b24notify.keys import Keys

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
}
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
    """Increment fleet-wide counters (one HINCRBY each; callers on hot paths use ``pipeline``)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.metrics()

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        self.redis.hincrby(self.key, counter_field(name, **labels), amount)

    def forget_portal(self, portal: str) -> int:
        """Remove every counter labelled with this portal (after its uninstall): the hash holds
        one field per label combination, and a portal that left must not stay in it for good."""
        label = counter_field("", portal=portal).lstrip("|")
        fields = [f for f in (_text(k) for k in self.redis.hkeys(self.key)) if label in f.split("|")[1:]]
        return int(self.redis.hdel(self.key, *fields)) if fields else 0


class RedisCountersCollector(Collector):
    """Exposes the Redis-held counters plus a few gauges, read fresh on every scrape."""

    def __init__(self, counters: Mapping[str, float], gauges: Mapping[str, float]) -> None:
        self.counters = counters
        self.gauges = gauges

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        grouped: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for field, value in self.counters.items():
            name, labels = parse_field(field)
            grouped[name].append((labels, value))
        for name, samples in sorted(grouped.items()):
            label_names = sorted({k for labels, _ in samples for k in labels})
            family = CounterMetricFamily(name, HELP.get(name, name), labels=label_names)
            for labels, value in samples:
                family.add_metric([labels.get(k, "") for k in label_names], value)
            yield family
        for name, value in sorted(self.gauges.items()):
            yield GaugeMetricFamily(name, name.replace("_", " "), value=value)


def decode_counters(raw: Mapping[bytes | str, bytes | str]) -> dict[str, int]:
    return {_text(k): int(_text(v)) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def render(counters: Mapping[str, int], gauges: Mapping[str, float]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCountersCollector(counters, gauges))
    return generate_latest(registry)


def total(counters: Mapping[str, int], name: str, **labels: str) -> int:
    """Sum of a counter over the samples matching ``labels`` (for tests and the CLI)."""
    result = 0
    for field, value in counters.items():
        fname, flabels = parse_field(field)
        if fname == name and all(flabels.get(k) == v for k, v in labels.items()):
            result += value
    return result

