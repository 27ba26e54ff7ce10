"""Outbound events, sent the way the Bitrix24 queue server sends them to an outgoing webhook.

- One form POST (``application/x-www-form-urlencoded``, PHP ``http_build_query`` keys) per event
  and handler, in the docs/protocol.md §1 "(derived)" outgoing-webhook shape: no OAuth keys in ``auth``.
- ``data`` carries ids only, per the docs/protocol.md §2 table.
- Each event is POSTed **once**: a timeout, a refused connection or an error status is logged and
  the event is lost, never retried (§1 "Retries, timeouts, ordering").
- Besides the outgoing webhook, an event goes to every handler the installed app bound for it with
  ``event.bind``, in the application shape (``app_events.py`` builds those bodies), under the same
  chaos and no-retry rules.

Chaos for reliability tests (drop, duplicate, reorder by a random extra delay) is decided when the
event is emitted, from one seeded ``random.Random``, so the same seed and the same actions give
the same deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from b24notify.devtools.simulator.oauth import SERVER_ENDPOINT  # sent as auth[server_endpoint]; never to be called
from b24notify.phpform import encode_php_form

log = logging.getLogger(__name__)

UNDEFINED = "undefined"
USER_AGENT = "Bitrix24 Webhook Engine (b24notify simulator)"
# Delivery kinds: to the outgoing webhook, or to an application's handler.
WEBHOOK = "webhook"
APP = "app"


@dataclass(frozen=True)
class PortalEvent:
    name: str  # upper case, as sent in ``event``
    fields_before: Mapping[str, int] | str
    fields_after: Mapping[str, int | str] | str
    accessible_before: str = UNDEFINED
    accessible_after: str = UNDEFINED

    @property
    def task_id(self) -> int | None:
        key = "TASK_ID" if "COMMENT" in self.name else "ID"
        for fields in (self.fields_after, self.fields_before):
            if isinstance(fields, Mapping) and key in fields:
                return int(fields[key])
        return None

    def data(self) -> dict[str, Any]:
        return {
            "FIELDS_BEFORE": self.fields_before,
            "FIELDS_AFTER": self.fields_after,
            "IS_ACCESSIBLE_BEFORE": self.accessible_before,
            "IS_ACCESSIBLE_AFTER": self.accessible_after,
        }


# -- the six task events (docs/protocol.md §2 table) ---------------------------------------------------

TASK_EVENTS = ("ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE",
               "ONTASKCOMMENTADD", "ONTASKCOMMENTUPDATE", "ONTASKCOMMENTDELETE")


def task_added(task_id: int) -> PortalEvent:
    return PortalEvent("ONTASKADD", UNDEFINED, {"ID": task_id}, "N", UNDEFINED)


def task_updated(task_id: int) -> PortalEvent:
    return PortalEvent("ONTASKUPDATE", {"ID": task_id}, {"ID": task_id})


def task_deleted(task_id: int) -> PortalEvent:
    return PortalEvent("ONTASKDELETE", {"ID": task_id}, UNDEFINED, UNDEFINED, "N")


def comment_added(task_id: int, comment_id: int, *, message_id: int | None = None) -> PortalEvent:
    """Old card: ``{ID, TASK_ID}``. New card (``message_id`` given): ``{ID: 0, TASK_ID, MESSAGE_ID}``.
    IS_ACCESSIBLE_BEFORE is 'N' as in the source; the doc example shows "undefined" (§2)."""
    if message_id is not None:
        after: dict[str, int] = {"ID": 0, "TASK_ID": task_id, "MESSAGE_ID": message_id}
    else:
        after = {"ID": comment_id, "TASK_ID": task_id}
    return PortalEvent("ONTASKCOMMENTADD", UNDEFINED, after, "N", UNDEFINED)


def comment_updated(task_id: int, comment_id: int) -> PortalEvent:
    ids = {"ID": comment_id, "TASK_ID": task_id}
    return PortalEvent("ONTASKCOMMENTUPDATE", ids, {**ids, "ACTION": "EDIT"})


def comment_deleted(task_id: int, comment_id: int) -> PortalEvent:
    ids = {"ID": comment_id, "TASK_ID": task_id}
    return PortalEvent("ONTASKCOMMENTDELETE", ids, {**ids, "ACTION": "DEL"})


# -- wire format ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookAuth:
    """The ``auth`` block of an outgoing webhook: no OAuth tokens (docs/protocol.md §1)."""

    domain: str
    member_id: str
    application_token: str
    scheme: str = "http"  # "https" when the simulator serves TLS

    def as_form(self) -> dict[str, str]:
        return {
            "domain": self.domain,
            "client_endpoint": f"{self.scheme}://{self.domain}/rest/",
            "server_endpoint": SERVER_ENDPOINT,
            "member_id": self.member_id,
            "application_token": self.application_token,
        }


def event_form(event: PortalEvent, *, handler_id: int, ts: int, auth: WebhookAuth) -> list[tuple[str, str]]:
    """The form fields in the order of the docs/protocol.md §1 "(derived)" example."""
    return encode_php_form({
        "event": event.name,
        "event_handler_id": handler_id,
        "data": event.data(),
        "ts": ts,
        "auth": auth.as_form(),
    })


# -- delivery ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppCopy:
    """One event's body for one handler an application bound with ``event.bind``."""

    url: str
    body: str


@dataclass
class EventChaos:
    drop_probability: float = 0.0
    duplicate_probability: float = 0.0
    reorder_max_ms: int = 0


@dataclass
class Delivery:
    """One copy of one event and what became of it."""

    seq: int  # the event's number; a duplicate shares it
    event: str
    task_id: int | None
    data: dict[str, Any]
    copy: int  # 1, or 2 for a chaos duplicate
    delay_ms: int
    queued_at: float
    body: str = ""
    outcome: str = "pending"  # pending | sent | rejected | failed | dropped | no_handler | cancelled
    status_code: int | None = None
    error: str | None = None
    sent_at: float | None = None
    kind: str = WEBHOOK  # WEBHOOK | APP
    handler: str | None = None  # the URL it goes to

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "event": self.event, "task_id": self.task_id, "data": self.data,
            "copy": self.copy, "delay_ms": self.delay_ms, "queued_at": self.queued_at,
            "outcome": self.outcome, "status_code": self.status_code, "error": self.error,
            "sent_at": self.sent_at, "body": self.body, "kind": self.kind, "handler": self.handler,
        }


@dataclass
class _Job:
    delivery: Delivery
    url: str


class EventQueue:
    """The portal's queue server: ``emit`` from a REST method, one background task POSTs."""

    def __init__(
        self,
        auth: WebhookAuth,
        *,
        handler_url: str | None = None,
        handler_id: int = 1,
        chaos: EventChaos | None = None,
        seed: int | str = 0,
        timeout_seconds: float = 5.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.auth = auth
        self.handler_url = handler_url
        self.handler_id = handler_id
        self.chaos = chaos or EventChaos()
        self.timeout_seconds = timeout_seconds
        self._wall = wall
        self.deliveries: list[Delivery] = []
        self._rng = random.Random(f"events:{seed}")
        # App handlers draw from their own stream: binding one must not change the webhook's chaos.
        self._app_rng = random.Random(f"app-events:{seed}")
        self._seq = itertools.count(1)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._drainer: asyncio.Task[None] | None = None
        self._delayed: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def reseed(self, seed: int | str) -> None:
        self._rng = random.Random(f"events:{seed}")
        self._app_rng = random.Random(f"app-events:{seed}")

    def clear(self) -> None:
        """Forget the log and restart numbering; deliveries in flight still finish (unlogged)."""
        self._seq = itertools.count(1)
        self.deliveries = []

    @property
    def pending(self) -> int:
        return self._pending

    def emit(self, event: PortalEvent, apps: Sequence[AppCopy] = ()) -> None:
        """Queue the event for the outgoing webhook and for each app handler in ``apps``."""
        seq = next(self._seq)
        body = urlencode(event_form(event, handler_id=self.handler_id, ts=int(self._wall()), auth=self.auth))
        self._fan_out(seq, event, WEBHOOK, self.handler_url, body, self._rng)
        for app in apps:
            self._fan_out(seq, event, APP, app.url, app.body, self._app_rng)

    def _fan_out(self, seq: int, event: PortalEvent, kind: str, url: str | None, body: str,
                 rng: random.Random) -> None:
        # Always four random() draws per event and handler, whatever the knobs say, so changing one
        # chaos knob does not shift what the others decide for the same seed.
        drop_draw, duplicate_draw = rng.random(), rng.random()
        delays = [int(rng.random() * (max(0, self.chaos.reorder_max_ms) + 1)) for _ in range(2)]
        copies = 2 if duplicate_draw < self.chaos.duplicate_probability else 1
        for copy in range(1, copies + 1):
            delivery = Delivery(seq, event.name, event.task_id, event.data(), copy, delays[copy - 1],
                                self._wall(), body, kind=kind, handler=url)
            self.deliveries.append(delivery)
            if drop_draw < self.chaos.drop_probability:
                delivery.outcome = "dropped"
            elif not url:
                delivery.outcome = "no_handler"
            else:
                self._pending += 1
                self._idle.clear()
                self._queue.put_nowait(_Job(delivery, url))
            log.info("event=sim.event.emitted name=%s kind=%s seq=%d copy=%d task=%s outcome=%s",
                     event.name, kind, seq, copy, delivery.task_id, delivery.outcome)

    async def send_now(self, name: str, data: dict[str, Any], url: str | None, body: str) -> Delivery:
        """POST one app lifecycle event (ONAPPINSTALL, ONAPPUNINSTALL) now, past the queue and its
        chaos, and log it; the caller learns the outcome from the returned Delivery."""
        delivery = Delivery(next(self._seq), name, None, data, 1, 0, self._wall(), body, kind=APP, handler=url)
        self.deliveries.append(delivery)
        if not url:
            delivery.outcome = "no_handler"
            return delivery
        self._pending += 1
        self._idle.clear()
        await self._deliver(_Job(delivery, url))
        return delivery

    async def start(self) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False, headers={"User-Agent": USER_AGENT})
        self._drainer = asyncio.create_task(self._drain(), name="sim-event-queue")

    async def stop(self) -> None:
        tasks = [t for t in (self._drainer, *self._delayed) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            self._finish(self._queue.get_nowait().delivery, "cancelled")
        if self._client is not None:
            await self._client.aclose()

    async def wait_idle(self, timeout: float) -> bool:
        """True once nothing is queued or in flight; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _drain(self) -> None:
        while True:
            job = await self._queue.get()
            if job.delivery.delay_ms > 0:
                # Reorder chaos: each delayed copy travels on its own, so later events can overtake.
                task = asyncio.create_task(self._deliver_later(job))
                self._delayed.add(task)
                task.add_done_callback(self._delayed.discard)
            else:
                await self._deliver(job)

    async def _deliver_later(self, job: _Job) -> None:
        try:
            await asyncio.sleep(job.delivery.delay_ms / 1000)
        except asyncio.CancelledError:
            self._finish(job.delivery, "cancelled")
            raise
        await self._deliver(job)

    async def _deliver(self, job: _Job) -> None:
        delivery = job.delivery
        assert self._client is not None, "EventQueue.start() was not awaited"
        delivery.sent_at = self._wall()
        try:
            response = await self._client.post(
                job.url, content=delivery.body, timeout=self.timeout_seconds,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        except asyncio.CancelledError:
            self._finish(delivery, "cancelled")
            raise
        except httpx.HTTPError as exc:
            # Logged and lost, as the portal does; never retried.
            delivery.error = type(exc).__name__
            self._finish(delivery, "failed")
            log.warning("event=sim.event.failed name=%s seq=%d error=%s", delivery.event, delivery.seq,
                        delivery.error)
            return
        delivery.status_code = response.status_code
        self._finish(delivery, "sent" if response.is_success else "rejected")
        log.info("event=sim.event.sent name=%s seq=%d copy=%d status=%d", delivery.event, delivery.seq,
                 delivery.copy, response.status_code)

    def _finish(self, delivery: Delivery, outcome: str) -> None:
        delivery.outcome = outcome
        self._pending -= 1
        if self._pending <= 0:
            self._pending = 0
            self._idle.set()
