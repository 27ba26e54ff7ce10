"""One simulated portal with everything around it, wired together: the portal model and its REST
methods, the rate bucket and operating ledger, fault rules, the event queue, the call log, and the
OAuth application installed on it.

The control API changes the simulation only through ``reconfigure``, ``reset``, ``install_app``
and ``uninstall_app``, so a change reaches every part the same way.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

from b24notify.devtools.simulator.app_events import (
    INSTALL_DATA,
    ON_APP_INSTALL,
    ON_APP_UNINSTALL,
    UNINSTALL_DATA,
    app_auth,
    install_body,
    task_event_body,
    uninstall_body,
)
from b24notify.devtools.simulator.app_install import InstalledApp
from b24notify.devtools.simulator.app_methods import EventMethods
from b24notify.devtools.simulator.auth import Caller, authenticate
from b24notify.devtools.simulator.bucket import LeakyBucket, OperatingLedger
from b24notify.devtools.simulator.calllog import CallLog
from b24notify.devtools.simulator.config import SimulatorConfig
from b24notify.devtools.simulator.dispatch import Dispatcher
from b24notify.devtools.simulator.events import AppCopy, Delivery, EventChaos, EventQueue, PortalEvent, WebhookAuth
from b24notify.devtools.simulator.faults import FaultPlan
from b24notify.devtools.simulator.methods import PortalMethods
from b24notify.devtools.simulator.oauth import OAuthAuthority, TokenRejected, TokenResponse
from b24notify.devtools.simulator.portal import Portal, UserNotFound

# The code of a webhook made for another user: a fixed test value like the config's, not a secret.
WEBHOOK_CODE_PREFIX = "sim-webhook-user-"


def _auth(config: SimulatorConfig) -> WebhookAuth:
    return WebhookAuth(config.portal_domain, config.member_id, config.application_token, config.scheme)


def _chaos(config: SimulatorConfig) -> EventChaos:
    return EventChaos(config.event_drop_probability, config.event_duplicate_probability,
                      config.event_reorder_max_ms)


class Simulation:
    def __init__(
        self,
        config: SimulatorConfig,
        *,
        authority: OAuthAuthority | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.initial_config = config
        self.config = config
        self._monotonic = monotonic
        self._wall = wall
        # Shared when several simulators are portals of one app; outlives resets like the queue.
        self.authority = authority or OAuthAuthority(
            config.oauth_client_id, config.oauth_client_secret, config.access_token_ttl_seconds, clock=wall)
        self.app: InstalledApp | None = None
        # The queue outlives resets: its background task runs for the server's whole life.
        self.events = EventQueue(
            _auth(config),
            handler_url=config.handler_url,
            handler_id=config.event_handler_id,
            chaos=_chaos(config),
            seed=config.seed,
            timeout_seconds=config.event_timeout_seconds,
            wall=wall,
        )
        self._build()

    def _build(self) -> None:
        config = self.config
        self.portal = Portal(new_card=config.new_card)
        self.bucket = LeakyBucket(config.bucket_capacity, config.bucket_drain_per_second, self._monotonic)
        self.ledger = OperatingLedger(limit=config.operating_limit_seconds, cost=config.operating_cost_seconds,
                                      clock=self._wall)
        self.faults = FaultPlan(config.seed)
        self.calls = CallLog(self._wall)
        event_methods = EventMethods(lambda: self.app)
        self.methods = PortalMethods(self.portal, self._emit, extra=event_methods.handlers())
        self.dispatcher = Dispatcher(self.methods, self.faults, self.ledger, wall=self._wall)
        # user id -> webhook code; the config's webhook first, others made through the control API.
        self.webhooks: dict[int, str] = {config.webhook_user_id: config.webhook_code}

    # -- auth -----------------------------------------------------------------------------------------

    def webhook_caller(self, user_id: str, code: str) -> Caller | None:
        """Who ``/rest/{user_id}/{code}/`` acts as, or None when no such webhook exists."""
        known = self.webhooks.get(int(user_id)) if user_id.isdigit() else None
        if known is None or not hmac.compare_digest(code.encode(), known.encode()):
            return None
        return Caller(int(user_id))

    def add_webhook(self, user_id: int) -> str:
        """An incoming webhook of ``user_id`` (made once, the same one after): its code. Each user
        makes their own in the portal; a call through it acts as them (docs/protocol.md §8).
        Raises UserNotFound for a user the portal does not have."""
        if user_id not in self.portal.users:
            raise UserNotFound(user_id)
        return self.webhooks.setdefault(user_id, f"{WEBHOOK_CODE_PREFIX}{user_id}")

    def webhook_url(self, user_id: int) -> str:
        config = self.config
        return f"{config.scheme}://{config.portal_domain}/rest/{user_id}/{self.webhooks[user_id]}/"

    def token_caller(self, token: Any) -> Caller:
        """The caller behind an access token, if it is current and this portal's; raises RestError."""
        return authenticate(self.authority, token, self.config.member_id)

    # -- config ---------------------------------------------------------------------------------------

    def reconfigure(self, changes: dict[str, Any]) -> SimulatorConfig:
        """Apply live config changes (raises InvalidConfig); a new ``seed`` restarts chaos draws."""
        self.config = self.config.with_changes(changes)
        self._apply()
        if "seed" in changes:
            self.faults.reseed(self.config.seed)
            self.events.reseed(self.config.seed)
        return self.config

    def reset(self) -> None:
        """Back to the state right after start: seed users only, startup config, empty logs, only
        the config's webhook, and the app not installed (its tokens on this portal revoked)."""
        self._drop_app()
        self.config = self.initial_config
        self._build()
        self._apply()
        self.events.clear()
        self.events.reseed(self.config.seed)

    def _apply(self) -> None:
        config = self.config
        self.bucket.reconfigure(config.bucket_capacity, config.bucket_drain_per_second)
        self.ledger.limit = config.operating_limit_seconds
        self.ledger.cost = config.operating_cost_seconds
        self.portal.new_card = config.new_card
        self.events.auth = _auth(config)
        self.events.handler_url = config.handler_url
        self.events.handler_id = config.event_handler_id
        self.events.chaos = _chaos(config)
        self.events.timeout_seconds = config.event_timeout_seconds

    # -- the OAuth application ------------------------------------------------------------------------

    async def install_app(self, user_id: int) -> tuple[InstalledApp, Delivery]:
        """Install the app as ``user_id`` and POST ONAPPINSTALL to ``app_handler_url``, awaiting the
        answer. Installing again starts over: new tokens and app token, no bindings. Raises
        PortalConflict when another portal of the shared authority has this ``member_id``."""
        self._drop_app()
        config = self.config
        token = self._issue(config.member_id, user_id)
        # Installed before the event goes out: the app's handler may call event.bind while handling it.
        app = self.app = InstalledApp(config.member_id, user_id)
        body = install_body(token, domain=config.portal_domain, application_token=app.application_token,
                            ts=int(self._wall()))
        delivery = await self.events.send_now(ON_APP_INSTALL, INSTALL_DATA, config.app_handler_url, body)
        return app, delivery

    async def uninstall_app(self) -> list[Delivery] | None:
        """Uninstall the app and POST ONAPPUNINSTALL to ``app_handler_url`` and to the handlers bound
        for it; None when the app is not installed."""
        app = self.app
        if app is None:
            return None
        config = self.config
        bound = [b.handler for b in app.handlers_for(ON_APP_UNINSTALL)]
        urls: list[str | None] = [*dict.fromkeys(url for url in (config.app_handler_url, *bound) if url)]
        # Rights go before the event is sent: the handler can no longer call the API (the
        # on-app-uninstall doc page says so), so the event carries no tokens.
        self._drop_app()
        body = uninstall_body(domain=config.portal_domain, client_endpoint=config.client_endpoint,
                              member_id=app.member_id, application_token=app.application_token,
                              ts=int(self._wall()))
        return [await self.events.send_now(ON_APP_UNINSTALL, UNINSTALL_DATA, url, body) for url in urls or [None]]

    def _drop_app(self) -> None:
        if self.app is not None:
            self.authority.revoke_portal(self.app.member_id)
            self.app = None

    def _issue(self, member_id: str, user_id: int) -> TokenResponse:
        return self.authority.issue(member_id, self.config.portal_domain, self.config.client_endpoint, user_id)

    def _emit(self, event: PortalEvent, user_id: int) -> None:
        self.events.emit(event, self._app_copies(event, user_id))

    def _app_copies(self, event: PortalEvent, user_id: int) -> list[AppCopy]:
        app = self.app
        if app is None:
            return []
        copies = []
        for binding in app.handlers_for(event.name):
            token = self._event_token(app, binding.auth_type or user_id)
            auth = app_auth(token, domain=self.config.portal_domain, application_token=app.application_token)
            body = task_event_body(event, handler_id=binding.id, ts=int(self._wall()), auth=auth)
            copies.append(AppCopy(binding.handler, body))
        return copies

    def _event_token(self, app: InstalledApp, user_id: int) -> TokenResponse:
        """A current access token of ``user_id`` for an event: the last one while it works, else new."""
        token = app.event_tokens.get(user_id)
        if token is not None:
            try:
                self.authority.check(token["access_token"])
                return token
            except TokenRejected:
                pass
        token = app.event_tokens[user_id] = self._issue(app.member_id, user_id)
        return token
