"""The web side of "which portals do we serve": whose token an event must carry, and the app's
install / uninstall events (OAuth application mode).

An install is trusted only after the OAuth server (``B24_OAUTH_URL``, never a URL from the event)
accepts its refresh token with our client secret and names the same ``member_id`` and
``client_endpoint``: a forged ``ONAPPINSTALL`` cannot plant an endpoint or take over a portal.
"""

from __future__ import annotations

import hmac
import logging
import time

import httpx
from redis.asyncio import Redis

from b24notify.events import AppInstallEvent, AppUninstallEvent
from b24notify.keys import Keys
from b24notify.portals.registry import AppInstall, AsyncAppRegistry, endpoint_problem
from b24notify.portals.spec import PortalSpec, webhook_portals
from b24notify.rest.errors import B24Error, PortalUnusable
from b24notify.rest.oauth import OAuthApp, request_refresh_async
from b24notify.service.intake import PortalIdentity, Rejection
from b24notify.settings import Settings

log = logging.getLogger(__name__)


class WebPortals:
    def __init__(self, settings: Settings, redis: Redis, keys: Keys) -> None:
        settings.require_portal()
        self.registry = AsyncAppRegistry(redis, keys)
        self.static: dict[str, PortalSpec] = {spec.key: spec for spec in webhook_portals(settings)}
        # Built once: the webhook looks one up per event.
        self._static_identity = {key: PortalIdentity(spec.application_token, spec.key, spec.member_id)
                                 for key, spec in self.static.items()}
        self.app: OAuthApp | None = None
        if settings.app_mode:
            assert settings.b24_client_id is not None and settings.b24_client_secret is not None
            self.app = OAuthApp(settings.b24_client_id, settings.b24_client_secret.get_secret_value(),
                                settings.b24_oauth_url)

    async def identity(self, domain: str) -> PortalIdentity | None:
        """Who an event claiming ``auth[domain]`` must prove to be. One portal configured and no
        app: that portal, so a wrong domain is told apart from a wrong token."""
        key = domain.lower()
        known = self._static_identity.get(key)
        if known is not None:
            return known
        spec = self.static.get(key) or self.static.get(_with_default_port(key, self.static))
        if spec is None and self.app is None and len(self.static) == 1:
            spec = next(iter(self.static.values()))
        if spec is not None:
            return PortalIdentity(spec.application_token, spec.key, spec.member_id)
        if self.app is None or not key:
            return None
        credentials = await self.registry.credentials(key)
        if credentials is None:
            return None
        token, member = credentials
        return PortalIdentity(token, key, member)

    async def portal_keys(self) -> list[str]:
        installed = await self.registry.portals() if self.app else []
        return list(self.static) + [p for p in installed if p not in self.static]

    async def install(self, event: AppInstallEvent, http: httpx.AsyncClient) -> str:
        if self.app is None:
            raise Rejection(403, "not_an_app", "ONAPPINSTALL, but B24_CLIENT_ID is not set (webhook mode)")
        if event.domain in self.static:
            raise Rejection(409, "install_refused", "this portal is configured as a webhook portal")
        problem = endpoint_problem(event.client_endpoint, event.domain)
        if problem:
            raise Rejection(403, "install_refused", problem)
        existing = await self.registry.member_id(event.domain)
        if existing is not None and existing != event.member_id:
            raise Rejection(403, "install_refused", "another member_id is installed under this domain")
        try:
            grant = await request_refresh_async(http, self.app, event.refresh_token)
        except PortalUnusable as exc:
            raise Rejection(403, "install_unverified", f"the OAuth server refused the install: {exc.code}") from None
        except B24Error as exc:
            # The portal does not retry; the admin reinstalls. Say why in its log.
            raise Rejection(503, "oauth_unavailable", f"could not verify the install: {exc.code}") from None
        if not hmac.compare_digest(grant.member_id.encode(), event.member_id.encode()):
            raise Rejection(403, "install_unverified", "the OAuth server names another member_id")
        # Fail closed: the endpoint we will send this portal's tokens to must be the one the OAuth
        # server names. An answer without one confirms nothing (the event's own claim is no proof).
        if not grant.client_endpoint:
            raise Rejection(403, "install_unverified", "the OAuth server did not confirm a client_endpoint")
        if grant.client_endpoint.lower() != event.client_endpoint.lower():
            raise Rejection(403, "install_unverified", "the OAuth server names another client_endpoint")
        install = AppInstall(
            domain=event.domain, member_id=event.member_id, client_endpoint=event.client_endpoint,
            application_token=event.application_token, access_token=grant.access_token,
            refresh_token=grant.refresh_token, expires=grant.expires, user_id=event.user_id or grant.user_id,
            installed_at=time.time(),
        )
        # The check above saves an OAuth call; the script checks again, atomically (two installs racing).
        if not await self.registry.save(install):
            raise Rejection(403, "install_refused", "another member_id is installed under this domain")
        log.info("event=app.installed portal=%s member=%s", install.domain, install.member_id)
        return install.domain

    async def uninstall(self, event: AppUninstallEvent) -> str:
        if self.app is None:
            raise Rejection(403, "not_an_app", "ONAPPUNINSTALL, but B24_CLIENT_ID is not set (webhook mode)")
        identity = await self.identity(event.domain)
        stored = identity.application_token if identity is not None else "\0"
        if not hmac.compare_digest(event.application_token.encode("utf-8", "surrogatepass"),
                                   stored.encode("utf-8", "surrogatepass")) or identity is None:
            raise Rejection(401, "bad_token", "auth[application_token] does not match the install")
        # Forget the portal: its install and whole-portal keys now, its per-task state within minutes
        # (a worker's upkeep, RemovedPortals). A reinstall starts afresh, with a new connected_at.
        await self.registry.remove(event.domain)
        log.info("event=app.uninstalled portal=%s", event.domain)
        return event.domain


def _with_default_port(domain: str, static: dict[str, PortalSpec]) -> str:
    # auth[domain] never carries a port; a portal configured as host:443 is still that host.
    for key in static:
        if key.split(":")[0] == domain:
            return key
    return domain
