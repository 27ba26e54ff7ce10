"""What a worker's jobs need, built from Settings: one ``WorkerContext`` per portal, made on first
use by ``WorkerContexts``.

RQ calls job functions by dotted name, so the worker hands its contexts to job code through one
context variable, set around each job by ``B24Worker.perform_job``. This is the single seam between
RQ and our code; nothing else is process-global.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field

import httpx
from redis import Redis

from b24notify.channels.apprise import AppriseChannel, is_usable
from b24notify.channels.base import Channel
from b24notify.channels.chat import ChatChannel
from b24notify.channels.email import EmailChannel
from b24notify.channels.notify import PersonalChannel
from b24notify.dueset import DueSet
from b24notify.keys import DELIVERIES, TASKS, Keys, as_text
from b24notify.metrics import CountedGuard, Counters
from b24notify.portals.binding import bind_events, handler_url
from b24notify.portals.directory import PortalDirectory
from b24notify.portals.registry import AppInstall
from b24notify.portals.spec import PortalSpec, require_channels, webhook_portals
from b24notify.replica_wait import ReplicaWait
from b24notify.rest.budget import RateBudget
from b24notify.rest.client import RestClient
from b24notify.rest.credentials import Credentials, WebhookCredentials
from b24notify.rest.errors import B24Error
from b24notify.rest.guard import PortalGuard
from b24notify.rest.oauth import AppTokens, OAuthApp, OAuthCredentials
from b24notify.rest.operating import OperatingBudget
from b24notify.settings import ConfigError, Settings
from b24notify.settings.rates import RateLimit
from b24notify.settings.smtp import SmtpConfig
from b24notify.state_epoch import Baseline, StateEpoch, process_name
from b24notify.workers.reconcile import Reconciler, Watch, WatchPolicy
from b24notify.workers.upkeep import Upkeep

WEBHOOK_CLIENT_ID = "b24notify"  # the CLIENT_ID of personal notifications sent through a webhook
SPEC_RECHECK_SECONDS = 30.0  # how soon a reinstall or an uninstall reaches a running worker
BIND_CHECK_SECONDS = 60.0  # how often a worker checks that an app install's events are bound

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """Everything a job needs for one portal."""

    settings: Settings
    redis: Redis
    keys: Keys
    tasks: DueSet
    deliveries: DueSet
    client: RestClient
    channels: Mapping[str, Channel]
    counters: Counters
    state: StateEpoch
    watch: Watch
    reconciler: Reconciler | None
    spec: PortalSpec
    replica_wait: ReplicaWait
    clock: Callable[[], float] = field(default=time.time)
    told: set[int] = field(default_factory=set)  # people already logged as having no e-mail address

    @property
    def portal(self) -> str:
        return self.spec.key

    def baseline(self) -> Baseline:
        """The state's epoch and the portal's connected_at, for one sync job (state_epoch.py)."""
        return self.state.baseline(self.portal)

    def close(self) -> None:
        self.client.close()


class WorkerContexts:
    """The per-portal contexts of one worker process. Thread-safe: jobs and the dispatcher's
    reconciliation tick both ask for them.

    ``serving``: this process is a worker of the fleet. It makes the state's epoch and each
    portal's ``connected_at`` when missing and watches the epoch (state_epoch.py); tools that only
    look (``doctor``, ``register``, ``sync --task``) leave both alone."""

    def __init__(self, settings: Settings, redis: Redis, *, clock: Callable[[], float] = time.monotonic,
                 serving: bool = False) -> None:
        require_channels(settings)
        self.settings = settings
        check_apprise_urls(webhook_portals(settings))
        self.redis = redis
        self.keys = Keys(settings.b24notify_key_prefix)
        self.counters = Counters(redis, self.keys)
        self.tasks = DueSet(redis, self.keys, TASKS)
        self.deliveries = DueSet(redis, self.keys, DELIVERIES)
        self.directory = PortalDirectory(settings, redis, self.keys)
        self.oauth = OAuthApp(settings.b24_client_id or "", settings.b24_client_secret.get_secret_value()
                              if settings.b24_client_secret else "", settings.b24_oauth_url)
        self._oauth_http = httpx.Client(follow_redirects=False, headers={"User-Agent": "b24notify"})
        self._clock = clock
        self.state = StateEpoch(redis, self.keys, by=process_name("worker" if serving else "tool"),
                                keep_seconds=settings.b24notify_results_keep_days * 86400, serving=serving,
                                portals=self.directory.portals)
        self.replica_wait = ReplicaWait(settings.replica_wait_ms)
        self.upkeep = Upkeep(redis, self.keys, parked_keep_seconds=settings.b24notify_results_keep_days * 86400.0)
        self._lock = threading.Lock()
        self._built: dict[str, tuple[WorkerContext, float]] = {}
        self._bind_after: dict[str, float] = {}

    def get(self, portal: str) -> WorkerContext | None:
        """The portal's context, or None when this process does not (or no longer) serve it."""
        with self._lock:
            cached = self._built.get(portal)
            if cached is not None and (cached[0].spec.webhook is not None
                                       or self._clock() - cached[1] < SPEC_RECHECK_SECONDS):
                return cached[0]
            found = self.directory.get(portal)
            if found is None:
                if cached is not None:
                    cached[0].close()
                    del self._built[portal]
                return None
            spec, install = found
            if cached is not None and cached[0].spec == spec:
                self._built[portal] = (cached[0], self._clock())
                return cached[0]
            if cached is not None:
                cached[0].close()
            context = self._build(spec, install)
            self._built[portal] = (context, self._clock())
            return context

    def all(self) -> list[WorkerContext]:
        return [ctx for ctx in (self.get(portal) for portal in self.directory.portals()) if ctx is not None]

    def periodic(self) -> None:
        """Once a second, from the dispatcher: check the state's epoch (one HGET: a state loss is
        found within a second even with no job running); reconcile every portal; bind events where
        an app install has not been bound yet (a fresh install, or a reinstall, which drops
        handlers); once a minute, one worker of the fleet runs the upkeep."""
        self.state.verify()
        self.upkeep.run_if_due()
        for ctx in self.all():
            if ctx.reconciler is not None:
                ctx.reconciler.tick()
            if ctx.spec.webhook is None:
                self._ensure_bound(ctx)

    def mark_bound(self, portal: str, handler: str) -> None:
        self.redis.hset(self.keys.app_install(portal), "bound_handler", handler)

    def _ensure_bound(self, ctx: WorkerContext) -> None:
        public_url = self.settings.b24notify_public_url
        if self._clock() < self._bind_after.get(ctx.portal, 0.0):
            return
        if not public_url:
            self._bind_after[ctx.portal] = float("inf")  # say it once per portal and process
            log.warning("event=app.not_bound portal=%s reason=%r", ctx.portal,
                        "B24NOTIFY_PUBLIC_URL is not set: set it, or run `b24notify register` with it")
            return
        self._bind_after[ctx.portal] = self._clock() + BIND_CHECK_SECONDS
        handler = handler_url(public_url)
        if as_text(self.redis.hget(self.keys.app_install(ctx.portal), "bound_handler") or b"") == handler:
            return
        if not self.redis.set(self.keys.oauth_lock(ctx.portal) + ":binding", "1", nx=True, ex=int(BIND_CHECK_SECONDS)):
            return  # another worker is binding it now
        try:
            report = bind_events(ctx.client, handler)
        except B24Error as exc:
            log.warning("event=app.bind_failed portal=%s code=%s", ctx.portal, exc.code)
            return
        if report.ok:
            self.mark_bound(ctx.portal, handler)
        log.info("event=app.bound portal=%s bound=%s failed=%s", ctx.portal, ",".join(report.bound) or "-",
                 ",".join(f"{e}:{c}" for e, c in report.failed.items()) or "-")

    def close(self) -> None:
        with self._lock:
            for context, _ in self._built.values():
                context.close()
            self._built.clear()
        self._oauth_http.close()

    def _credentials(self, spec: PortalSpec, install: AppInstall | None) -> Credentials:
        if spec.webhook is not None:
            return WebhookCredentials(spec.webhook)
        assert install is not None

        def refreshed(portal: str) -> None:
            self.counters.inc("b24notify_oauth_refreshes", portal=portal)

        tokens = AppTokens(self.redis, self.keys, spec.key, self.oauth, self._oauth_http, on_refresh=refreshed)
        return OAuthCredentials(tokens, install.client_endpoint)

    def _build(self, spec: PortalSpec, install: AppInstall | None) -> WorkerContext:
        settings, redis, keys = self.settings, self.redis, self.keys
        counters = self.counters

        guard = CountedGuard.of(portal_guard(settings, redis, keys, spec))  # tells requests from batch sub-calls

        def observe(method: str, outcome: str) -> None:
            counters.inc("b24notify_rest_calls", portal=spec.key, method=method, outcome=outcome,
                         also="b24notify_rest_requests" if guard.took_request() else "")

        client = RestClient(self._credentials(spec, install), timeout=settings.b24notify_rest_timeout_seconds,
                            observer=observe, guard=guard)
        # A REST channel's worst case: one request plus the budget's longest wait (workers/deadline.py).
        rest_seconds = settings.b24notify_rest_timeout_seconds + 5.0
        channels: dict[str, Channel] = {
            "chat": ChatChannel(client, send_seconds=rest_seconds),
            # A webhook names the app its notification TAGs belong to (CLIENT_ID); an app is itself.
            "notify": PersonalChannel(client, client_id=settings.b24_client_id or WEBHOOK_CLIENT_ID,
                                      send_seconds=rest_seconds),
        }
        if settings.smtp_url is not None and settings.email_from:
            smtp = SmtpConfig.from_url(settings.smtp_url.get_secret_value())
            channels["email"] = EmailChannel(smtp, settings.email_from)
        if spec.apprise_urls:
            channels["apprise"] = AppriseChannel(spec.apprise_urls)
        watch = Watch(redis, keys, spec.key, WatchPolicy.from_settings(settings))
        reconciler = None
        if settings.b24_reconcile_share > 0:
            reconciler = Reconciler(redis, keys, client, self.tasks, watch,
                                    portal_limit=RateLimit.parse(spec.rate_limit),
                                    share=settings.b24_reconcile_share)
        return WorkerContext(
            settings=settings, redis=redis, keys=keys, tasks=self.tasks, deliveries=self.deliveries,
            client=client, channels=channels, counters=counters, state=self.state, watch=watch,
            reconciler=reconciler, spec=spec, replica_wait=self.replica_wait,
        )


_current: ContextVar[WorkerContexts] = ContextVar("b24notify_worker_contexts")


def current_contexts() -> WorkerContexts:
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("b24notify jobs run inside `b24notify worker`, which provides their context") from None


def bind_contexts(contexts: WorkerContexts) -> object:
    return _current.set(contexts)


def unbind_contexts(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def check_apprise_urls(specs: list[PortalSpec]) -> None:
    """An ``apprise:`` target Apprise does not understand fails the start, not every delivery."""
    for spec in specs:
        for fingerprint, url in spec.apprise_urls.items():
            if not is_usable(url):
                raise ConfigError(f"B24NOTIFY_CONFIG: portal {spec.key}: the apprise: target with fingerprint "
                                  f"{fingerprint} is not a URL Apprise can send to (the URL is not shown: "
                                  "it may hold a token)")


def portal_guard(settings: Settings, redis: Redis, keys: Keys, spec: PortalSpec) -> PortalGuard:
    """The fleet-wide limits for one portal: its share of the rate bucket (what is left after
    the reserve for the portal's other integrations) and the per-method time budget."""
    limit = RateLimit.parse(spec.rate_limit).share(1.0 - settings.b24_rate_reserve)
    rate = RateBudget(redis, keys.budget(spec.key), limit)
    operating = OperatingBudget(redis, keys.operating(spec.key), limit_seconds=settings.b24_operating_limit_seconds)
    return PortalGuard(rate, operating)


def build_context(settings: Settings, redis: Redis) -> WorkerContext:
    """The one portal's context, serving, for tests and single-portal tools."""
    contexts = WorkerContexts(settings, redis, serving=True)
    portals = contexts.directory.portals()
    if len(portals) != 1:
        raise ValueError(f"build_context serves exactly one portal; {len(portals)} are configured")
    context = contexts.get(portals[0])
    assert context is not None
    return context
