"""The web app: ``POST /webhooks/bitrix24`` plus health, readiness and metrics.

It answers fast and enqueues: one Redis round trip (the ``schedule`` Lua script) per accepted
event of a configured portal, two for an app install's portal (its stored token is read first),
because Bitrix24 never retries a delivery that timed out or failed (docs/protocol.md §1).
``ONAPPINSTALL`` / ``ONAPPUNINSTALL`` are handled in ``service/portals.py``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from b24notify.console.routes import console_routes
from b24notify.dueset import DueSetKeys
from b24notify.events import (
    AppInstallEvent,
    EventAuth,
    EventType,
    IgnoredEvent,
    MalformedEvent,
    MissingToken,
    app_event_name,
    auth_of,
    parse_app_event,
)
from b24notify.keys import TASKS, Keys, as_text, task_member
from b24notify.metrics import counter_field, gather, render
from b24notify.redis_conn import connect_async
from b24notify.scripts import SCHEDULE
from b24notify.series import Budgets
from b24notify.service.batching import ScriptBatch
from b24notify.service.intake import (
    PortalIdentity,
    Rejection,
    authenticate,
    decode_payload,
    read_body,
    to_event,
)
from b24notify.service.portals import WebPortals
from b24notify.settings import Settings
from b24notify.state_epoch import StateLoss, establish_async, process_name
from b24notify.trace import TRACE_MAXLEN, TRACE_TTL_SECONDS

log = logging.getLogger(__name__)

# Stands in when an event carries no auth at all: authenticate() then rejects it for that reason.
UNKNOWN_PORTAL = PortalIdentity(application_token="\0", domain="")
SAFE_NAME = re.compile(r"[^A-Z0-9_]")


def _event_name(payload: dict[str, object]) -> str:
    """The sender's event name for log lines, metrics and answers: tamed (newlines, surrogates)."""
    name = payload.get("event")
    if isinstance(name, str) and name in EventType.__members__:
        return name  # what a portal sends: already upper case and safe
    return SAFE_NAME.sub("?", str(name or "unknown").upper()[:40])


def _auth_or_none(payload: dict[str, object]) -> EventAuth | None:
    try:
        return auth_of(payload)
    except MalformedEvent:
        return None


class Intake:
    """The webhook endpoint, with what it needs handed in."""

    def __init__(self, settings: Settings, redis: Redis, http: httpx.AsyncClient) -> None:
        self.redis = redis
        self.http = http
        self.keys = Keys(settings.b24notify_key_prefix)
        self.portals = WebPortals(settings, redis, self.keys)
        self.debounce = settings.b24notify_debounce_seconds
        cap = settings.b24notify_debounce_max_seconds
        self.debounce_cap = max(cap, self.debounce) if cap > 0 else 0.0
        self.due = DueSetKeys.of(self.keys, TASKS)
        self.watch_hot = settings.b24notify_watch_hot_seconds
        self.burst_threshold = settings.b24notify_burst_events_per_second
        # Events of one loop turn share a round trip (service/batching.py); each still waits on one.
        self.schedule = ScriptBatch(redis, SCHEDULE.source)

    async def webhook(self, request: Request) -> Response:
        event_name = "unknown"
        try:
            body = await read_body(request)
            payload = decode_payload(request.headers.get("content-type", ""), body)
            event_name = _event_name(payload)
            if app_event_name(payload) is not None and self.portals.app is not None:
                return await self._app_event(payload, event_name)
            auth = _auth_or_none(payload)  # read once; authenticate() says what is missing
            identity = await self._identity(auth)
            authenticate(payload, identity, auth)
            event = to_event(payload, auth)
        except Rejection as rejection:
            return self._reject(rejection, event_name)
        except RedisError as exc:
            log.error("event=webhook.redis_error error=%s", type(exc).__name__)
            return JSONResponse({"status": "error", "reason": "queue unavailable"}, status_code=503)
        if isinstance(event, IgnoredEvent):
            return self._answer({"status": "ignored", "event": event_name}, event_name, "ignored")
        portal = identity.domain
        member = task_member(portal, event.task_id)
        drop = event.type is EventType.ONTASKDELETE
        now = time.time()
        try:
            keys, args = SCHEDULE.keys_args(
                due=self.due.due, lease=self.due.lease, pending=self.due.pending, since=self.due.since,
                drop=self.keys.drop(), metrics=self.keys.metrics(), watch_active=self.keys.watch_active(portal),
                watch_next=self.keys.watch_next(portal), intake_rate=self.keys.intake_rate(),
                window=self.due.window, wake=self.due.wake, trace=self.keys.trace(portal), triggers=self.due.trigger,
                member=member, at=now + self.debounce, also_drop="1" if drop else "0",
                metrics_field=counter_field("b24notify_events", type=event.type.value, outcome="accepted"),
                now=now, debounce_cap=self.debounce_cap, task_id=str(event.task_id), first_poll=self.watch_hot,
                burst_threshold=self.burst_threshold,
                trigger="event", event=event.type.value, trace_maxlen=TRACE_MAXLEN, trace_ttl=TRACE_TTL_SECONDS,
            )
            scheduled = await self.schedule(keys=keys, args=args)
        except RedisError as exc:
            # 503 tells the portal's log (and the operator) that we could not take the event.
            log.error("event=webhook.redis_error task=%d error=%s", event.task_id, type(exc).__name__)
            return JSONResponse({"status": "error", "reason": "queue unavailable"}, status_code=503)
        log.info("event=webhook.accepted portal=%s type=%s task=%d coalesced=%s", portal, event.type.value,
                 event.task_id, not scheduled)
        # What JSONResponse would send, byte for byte, without a json.dumps per event.
        return Response(b'{"status":"accepted","task":%d,"coalesced":%s}' % (
            event.task_id, b"false" if scheduled else b"true"), media_type="application/json")

    async def _identity(self, auth: EventAuth | None) -> PortalIdentity:
        if auth is None:
            return UNKNOWN_PORTAL  # authenticate() says what is missing
        identity = await self.portals.identity(auth.domain)
        if identity is None:
            raise Rejection(403, "wrong_portal", "auth[domain] is not a portal b24notify serves")
        return identity

    async def _app_event(self, payload: dict[str, object], event_name: str) -> Response:
        try:
            app_event = parse_app_event(payload)
        except MissingToken as exc:
            raise Rejection(401, "missing_token", str(exc)) from None
        except MalformedEvent as exc:
            raise Rejection(400, "malformed", str(exc)) from None
        if isinstance(app_event, AppInstallEvent):
            portal = await self.portals.install(app_event, self.http)
            return self._answer({"status": "installed", "portal": portal}, event_name, "installed")
        portal = await self.portals.uninstall(app_event)
        return self._answer({"status": "uninstalled", "portal": portal}, event_name, "uninstalled")

    def _answer(self, body: Mapping[str, object], event_name: str, outcome: str, status: int = 200) -> Response:
        # Counted after the answer is sent, so the portal never waits on it.
        task = BackgroundTask(self._count, event_name, outcome)
        return JSONResponse(body, status_code=status, background=task)

    def _reject(self, rejection: Rejection, event_name: str) -> Response:
        log.warning("event=webhook.rejected status=%d reason=%s type=%s detail=%r", rejection.status,
                    rejection.reason, event_name, rejection.detail)
        body = {"status": "rejected", "reason": rejection.reason, "detail": rejection.detail}
        return self._answer(body, event_name, rejection.reason, rejection.status)

    async def _count(self, event_name: str, outcome: str) -> None:
        name = event_name if event_name in EventType.__members__ else "other"
        with contextlib.suppress(RedisError):
            await self.redis.hincrby(self.keys.metrics(), counter_field("b24notify_events", type=name,
                                                                          outcome=outcome), 1)


class Health:
    def __init__(self, portals: WebPortals, redis: Redis, keys: Keys, metrics_token: str = "",
                 budgets: Budgets | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.portals = portals
        self.metrics_token = metrics_token
        self.budgets = budgets  # each portal's REST budget, for /metrics
        self.epoch = ""  # the state's epoch as this process knows it (state_epoch.py)
        self.by = process_name("web")

    async def establish(self, portals: list[str]) -> None:
        """Make (or learn) the state's epoch and each portal's connected_at; a serving process."""
        self.epoch = (await establish_async(self.redis, self.keys, self.epoch, portals, self.by)).epoch

    async def state(self, served: list[str]) -> StateLoss | None:
        """The last state loss, if one is on record; an epoch gone or changed since we learnt it is
        one, found here (the web has no job to find it in)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.keys.epoch(), "id")
        pipe.hgetall(self.keys.state_lost())
        epoch, lost = await pipe.execute()
        if epoch is None or as_text(epoch) != self.epoch:
            await self.establish(served)
            lost = await self.redis.hgetall(self.keys.state_lost())
        return StateLoss.from_mapping(lost)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        # ?only=redis: ready while Redis answers, whatever the portals' state: the probe for a
        # fleet of web pods serving many portals, where one paused portal must not take every
        # pod out of the Service (and its events with it: Bitrix24 does not send them again).
        only = request.query_params.get("only")
        if only not in (None, "redis"):
            return JSONResponse({"status": "bad request", "detail": "only: the one value is redis"}, status_code=400)
        try:
            await self.redis.ping()
            served = await self.portals.portal_keys()
            halted = await self.redis.mget([self.keys.halted(p) for p in served]) if served else []
            loss = await self.state(served)
        except (RedisError, OSError) as exc:
            return JSONResponse({"status": "unavailable", "redis": f"unreachable: {type(exc).__name__}"},
                                status_code=503)
        # A state loss is reported (7 days) but does not make the web unready: it started over.
        state = {"state": loss.describe()} if loss is not None else {}
        paused = {portal: as_text(reason) for portal, reason in zip(served, halted, strict=True) if reason is not None}
        if paused:
            # One portal: the reason itself; several: which ones and why.
            detail: object = (f"calls paused: {next(iter(paused.values()))}" if len(served) == 1
                              else {p: f"calls paused: {r}" for p, r in paused.items()})
            return JSONResponse({"status": "degraded", "redis": "ok", "portal": detail, **state},
                                status_code=200 if only else 503)
        return JSONResponse({"status": "ok", "redis": "ok", "portal": "ok", "portals": len(served), **state})

    async def metrics(self, request: Request) -> Response:
        if self.metrics_token and not hmac.compare_digest(
                request.headers.get("authorization", "").encode("utf-8", "surrogateescape"),
                f"Bearer {self.metrics_token}".encode("utf-8", "surrogateescape")):
            return JSONResponse({"status": "unauthorized", "detail": "send Authorization: Bearer "
                                 "B24NOTIFY_METRICS_TOKEN"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        try:
            # The counters, queue depths and ages, dead letters, each portal paused or not and its
            # REST budget: one round trip (two with app installs: their portals are read first).
            served = await self.portals.portal_keys()
            counters, gauges = await gather(self.redis, self.keys, served, self.budgets, time.time())
        except RedisError as exc:
            return JSONResponse({"status": "unavailable", "redis": type(exc).__name__}, status_code=503)
        return Response(render(counters, gauges), media_type="text/plain; version=0.0.4")


def create_app(settings: Settings, redis: Redis | None = None) -> Starlette:
    """Build the app. ``redis`` is injectable for tests; by default one client per app, closed on
    shutdown. Connection errors surface per request (503), never at start: the process stays up
    and ``/readyz`` says what is wrong."""
    client = redis if redis is not None else connect_async(
        settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=10
    )
    http = httpx.AsyncClient(follow_redirects=False, headers={"User-Agent": "b24notify"})
    intake = Intake(settings, client, http)
    token = settings.b24notify_metrics_token
    health = Health(intake.portals, client, intake.keys, token.get_secret_value() if token is not None else "",
                    budgets=Budgets.of(settings.b24_rate_limit, settings.b24_rate_reserve,
                                       intake.portals.static.values()))

    # The operator console (/console): no routes at all unless a console password is set.
    console, close_console = console_routes(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("event=web.start portals=%s app_mode=%s", ",".join(intake.portals.static) or "-",
                 settings.app_mode)
        # The first serving process to start makes the state's epoch and marks when each portal
        # was connected; results created before that are a silent baseline (state_epoch.py).
        # A Redis outage here must not stop the web: /readyz does it once Redis answers.
        with contextlib.suppress(RedisError, OSError):
            await health.establish(await intake.portals.portal_keys())
        yield
        await http.aclose()
        close_console()
        if redis is None:
            await client.aclose()

    routes = [
        Route("/webhooks/bitrix24", intake.webhook, methods=["POST"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        *console,
    ]
    return Starlette(routes=routes, lifespan=lifespan)
