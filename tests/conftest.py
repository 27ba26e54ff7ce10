"""Shared fixtures: a real Redis (own database number, own key prefix per test) and settings."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis

from b24notify.devtools.simulator import RunningSimulator, SimulatorConfig
from b24notify.devtools.smtp_sink import SmtpSink
from b24notify.dueset import DueSet
from b24notify.keys import TASKS, Keys
from b24notify.settings import Settings, load_settings
from b24notify.workers.context import WorkerContext, build_context
from tests.support.clock import Clock
from tests.support.portal_user import PortalUser

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except Exception as exc:  # a clear failure beats a hundred confusing ones
        pytest.exit(f"tests need Redis at {TEST_REDIS_URL} (set TEST_REDIS_URL): {exc}", returncode=3)
    finally:
        client.close()
    return TEST_REDIS_URL


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis(redis_url: str, key_prefix: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    for key in client.scan_iter(match=f"{key_prefix}:*", count=500):
        client.delete(key)
    client.close()


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix)


@pytest.fixture
def clock() -> Clock:
    """A clock the test moves by hand."""
    return Clock()


@pytest.fixture
def due(redis: Redis, keys: Keys, clock: Clock) -> DueSet:
    """The task due set on the hand-moved clock."""
    return DueSet(redis, keys, TASKS, clock=clock)


@pytest.fixture
def make_settings(redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Settings as an operator would give them, from a clean environment plus ``overrides``."""
    for name in list(os.environ):
        if name.startswith(("B24", "NOTIFY_", "SMTP_", "EMAIL_", "REDIS_URL")):
            monkeypatch.delenv(name, raising=False)

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "b24notify_key_prefix": key_prefix,
            "b24notify_queue": f"{key_prefix}-queue",
            "b24notify_debounce_seconds": 0.2,
        }
        values.update(overrides)
        return load_settings(overrides=values)

    return build


# -- the product against the simulator (in-process sync and delivery) -----------------------------


@pytest.fixture
def simulator() -> Iterator[RunningSimulator]:
    with RunningSimulator(SimulatorConfig(bucket_capacity=0)) as sim:
        yield sim


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as smtp:
        yield smtp


@pytest.fixture
def user(simulator) -> Iterator[PortalUser]:
    person = PortalUser(simulator.webhook_url)
    yield person
    person.close()


@pytest.fixture
def settings(make_settings, simulator, sink) -> Settings:
    return make_settings(
        b24_webhook_url=simulator.webhook_url, b24_application_token=simulator.config.application_token,
        notify_chat="chat42", notify_email="team@example.com", smtp_url=sink.url,
        email_from="b24notify@example.com", b24notify_delivery_retry_seconds="10,60",
    )


@pytest.fixture
def ctx(settings, redis: Redis) -> Iterator[WorkerContext]:
    # Connected an hour ago: everything the tests create is "after connection" unless they say so.
    redis.set(f"{settings.b24notify_key_prefix}:portal:{settings.portal}:connected_at",
              (datetime.now(UTC) - timedelta(hours=1)).isoformat())
    context = build_context(settings, redis)
    yield context
    context.close()


