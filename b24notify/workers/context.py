"""What a worker's jobs need, built once per worker process from Settings.

RQ calls job functions by dotted name, so the worker hands its context to job code through one
context variable, set around each job by ``B24Worker.perform_job``. This is the single seam between
RQ and our code; nothing else is process-global.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis import Redis

from b24notify.channels.base import Channel
from b24notify.channels.chat import ChatChannel
from b24notify.channels.email import EmailChannel, SmtpConfig
from b24notify.dueset import DueSet
from b24notify.keys import DELIVERIES, TASKS, Keys
from b24notify.metrics import Counters
from b24notify.rest.budget import RateBudget, RateLimit
from b24notify.rest.client import RestClient
from b24notify.rest.guard import PortalGuard
from b24notify.rest.operating import OperatingBudget
from b24notify.settings import Settings
from b24notify.workers.reconcile import Reconciler, Watch


@dataclass
class WorkerContext:
    settings: Settings
    redis: Redis
    keys: Keys
    tasks: DueSet
    deliveries: DueSet
    client: RestClient
    channels: Mapping[str, Channel]
    counters: Counters
    connected_at: datetime
    watch: Watch
    reconciler: Reconciler | None
    clock: Callable[[], float] = field(default=time.time)

    @property
    def portal(self) -> str:
        return self.settings.portal

    def close(self) -> None:
        self.client.close()


_current: ContextVar[WorkerContext] = ContextVar("b24notify_worker_context")


def current_context() -> WorkerContext:
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("b24notify jobs run inside `b24notify worker`, which provides their context") from None


def bind_context(context: WorkerContext) -> object:
    return _current.set(context)


def unbind_context(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def ensure_connected_at(redis: Redis, keys: Keys, portal: str, now: datetime | None = None) -> datetime:
    """The moment this portal was first connected: results created before it are a silent baseline.
    Written once (SET NX) by whichever process starts first; read by everyone after."""
    stamp = (now or datetime.now(UTC)).isoformat()
    redis.set(keys.connected_at(portal), stamp, nx=True)
    stored = redis.get(keys.connected_at(portal))
    value = stored.decode() if isinstance(stored, bytes) else str(stored)
    return datetime.fromisoformat(value)


def portal_guard(settings: Settings, redis: Redis, keys: Keys) -> PortalGuard:
    """The fleet-wide limits for our one portal: its share of the rate bucket (what is left after
    the reserve for the portal's other integrations) and the per-method time budget."""
    limit = RateLimit.parse(settings.b24_rate_limit).share(1.0 - settings.b24_rate_reserve)
    rate = RateBudget(redis, keys.budget(settings.portal), limit)
    operating = OperatingBudget(redis, keys.operating(settings.portal),
                                limit_seconds=settings.b24_operating_limit_seconds)
    return PortalGuard(rate, operating)


def build_context(settings: Settings, redis: Redis) -> WorkerContext:
    settings.require_channels()
    keys = Keys(settings.b24notify_key_prefix)
    counters = Counters(redis, keys)

    def observe(method: str, outcome: str) -> None:
        counters.inc("b24notify_rest_calls", method=method, outcome=outcome)

    client = RestClient(settings.webhook, timeout=settings.b24notify_rest_timeout_seconds, observer=observe,
                        guard=portal_guard(settings, redis, keys))
    channels: dict[str, Channel] = {}
    if settings.notify_chat:
        channels["chat"] = ChatChannel(client, settings.notify_chat)
    if settings.notify_email and settings.smtp_url is not None and settings.email_from:
        smtp = SmtpConfig.from_url(settings.smtp_url.get_secret_value())
        channels["email"] = EmailChannel(smtp, settings.email_from, settings.notify_email)
    tasks = DueSet(redis, keys, TASKS)
    watch = Watch(redis, keys, settings.portal, settings.watch_policy())
    reconciler = None
    if settings.b24_reconcile_share > 0:
        reconciler = Reconciler(redis, keys, client, tasks, watch,
                                portal_limit=RateLimit.parse(settings.b24_rate_limit),
                                share=settings.b24_reconcile_share)
    return WorkerContext(
        settings=settings,
        redis=redis,
        keys=keys,
        tasks=tasks,
        deliveries=DueSet(redis, keys, DELIVERIES),
        client=client,
        channels=channels,
        counters=counters,
        connected_at=ensure_connected_at(redis, keys, settings.portal),
        watch=watch,
        reconciler=reconciler,
    )
