"""OAuth for app mode: the token refresh (docs/protocol.md §8), done by exactly one process at a time.

Refresh tokens are single-use. Two workers that both see ``expired_token`` and both refresh would
each spend the same refresh token: the second gets ``invalid_grant`` and, worse, whichever answer
is stored last may hold a refresh token the server already rotated away — the install is broken
until someone reinstalls the app. So: one Redis lock per portal; the holder refreshes and stores
the new pair with a compare-and-set on the old refresh token; everyone else waits for the stored
access token to change and carries on with it. ``client_secret`` goes to the configured OAuth URL
only (``B24_OAUTH_URL``, default ``https://oauth.bitrix.info/oauth/token/``), never to a portal.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis import Redis

from b24notify.keys import Keys
from b24notify.portals.registry import AppInstall, AppRegistry
from b24notify.rest.errors import PortalUnusable, ServerError, TransportError
from b24notify.scripts import LOCK_RELEASE

log = logging.getLogger(__name__)

LOCK_SECONDS = 15.0  # longer than one refresh request may take (timeout below)
REFRESH_TIMEOUT = 10.0


@dataclass(frozen=True)
class OAuthApp:
    client_id: str
    client_secret: str = field(repr=False)
    token_url: str


@dataclass(frozen=True)
class TokenGrant:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires: float
    member_id: str
    client_endpoint: str
    user_id: int


class OAuthRefused(PortalUnusable):
    """The OAuth server refused the refresh (``invalid_grant``, ``invalid_client``): the install
    cannot be used until an operator acts (reinstall the app, fix B24_CLIENT_SECRET)."""


def refresh_params(app: OAuthApp, refresh_token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "client_id": app.client_id, "client_secret": app.client_secret,
            "refresh_token": refresh_token}


def parse_grant(status: int, body: bytes) -> TokenGrant:
    """The OAuth server's answer as a grant, or the typed error it means."""
    try:
        payload: Any = json.loads(body) if body else None
    except ValueError:
        payload = None
    if not isinstance(payload, Mapping):
        raise ServerError("ERROR_UNEXPECTED_ANSWER", f"OAuth server: non-JSON answer, HTTP {status}",
                          status=status, method="oauth.token")
    if "error" in payload:
        code = str(payload["error"])
        description = str(payload.get("error_description") or "")[:200]
        if status >= 500:
            raise ServerError(code, description, status=status, method="oauth.token")
        raise OAuthRefused(code, description, status=status, method="oauth.token")
    try:
        return TokenGrant(
            access_token=str(payload["access_token"]), refresh_token=str(payload["refresh_token"]),
            expires=float(payload.get("expires") or time.time() + float(payload.get("expires_in") or 3600)),
            member_id=str(payload["member_id"]), client_endpoint=str(payload.get("client_endpoint") or ""),
            user_id=int(payload.get("user_id") or 0),
        )
    except (KeyError, TypeError, ValueError):
        raise ServerError("ERROR_UNEXPECTED_ANSWER", "OAuth server: answer without tokens", status=status,
                          method="oauth.token") from None


def request_refresh(http: httpx.Client, app: OAuthApp, refresh_token: str) -> TokenGrant:
    try:
        response = http.get(app.token_url, params=refresh_params(app, refresh_token), timeout=REFRESH_TIMEOUT)
    except httpx.TimeoutException:
        raise TransportError("TIMEOUT", "OAuth server did not answer", method="oauth.token") from None
    except httpx.TransportError as exc:
        raise TransportError("NETWORK_ERROR", type(exc).__name__, method="oauth.token") from None
    return parse_grant(response.status_code, response.content)


async def request_refresh_async(http: httpx.AsyncClient, app: OAuthApp, refresh_token: str) -> TokenGrant:
    try:
        response = await http.get(app.token_url, params=refresh_params(app, refresh_token),
                                  timeout=REFRESH_TIMEOUT)
    except httpx.TimeoutException:
        raise TransportError("TIMEOUT", "OAuth server did not answer", method="oauth.token") from None
    except httpx.TransportError as exc:
        raise TransportError("NETWORK_ERROR", type(exc).__name__, method="oauth.token") from None
    return parse_grant(response.status_code, response.content)


class AppTokens:
    """One installed portal's tokens, read from Redis on every call (another process may have
    refreshed them), refreshed under the portal's lock."""

    def __init__(self, redis: Redis, keys: Keys, portal: str, app: OAuthApp, http: httpx.Client, *,
                 on_refresh: Callable[[str], None] | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = AppRegistry(redis, keys)
        self.redis = redis
        self.keys = keys
        self.portal = portal
        self.app = app
        self.http = http
        self._on_refresh = on_refresh
        self._sleep = sleep
        self._clock = clock

    def install(self) -> AppInstall:
        install = self.registry.get(self.portal)
        if install is None:
            raise PortalUnusable("APP_NOT_INSTALLED", f"the app is not installed on {self.portal}")
        return install

    def access_token(self) -> str:
        return self.install().access_token

    def refresh(self, stale_access_token: str) -> None:
        """Make sure the stored access token is newer than ``stale_access_token``."""
        lock = self.keys.oauth_lock(self.portal)
        deadline = self._clock() + LOCK_SECONDS + REFRESH_TIMEOUT
        while True:
            install = self.install()
            if install.access_token != stale_access_token:
                return  # someone refreshed meanwhile
            me = secrets.token_hex(8)
            if self.redis.set(lock, me, nx=True, px=int(LOCK_SECONDS * 1000)):
                try:
                    self._refresh_holding_lock(stale_access_token)
                finally:
                    LOCK_RELEASE.on(self.redis)(lock=lock, owner=me)
                return
            if self._clock() > deadline:
                raise TransportError("OAUTH_LOCK_TIMEOUT", "another process is still refreshing", method="oauth")
            self._sleep(0.05)

    def _refresh_holding_lock(self, stale_access_token: str) -> None:
        install = self.install()
        if install.access_token != stale_access_token:
            return
        grant = request_refresh(self.http, self.app, install.refresh_token)
        if grant.member_id != install.member_id:
            raise OAuthRefused("MEMBER_MISMATCH", "the OAuth server answered for another portal", method="oauth")
        if not self.registry.replace_tokens(install, grant.access_token, grant.refresh_token, grant.expires):
            # Only a reinstall replaces tokens without this lock; its tokens are the ones to use.
            log.warning("event=oauth.refresh_superseded portal=%s", self.portal)
            return
        log.info("event=oauth.refreshed portal=%s", self.portal)
        if self._on_refresh is not None:
            self._on_refresh(self.portal)


class OAuthCredentials:
    """Credentials for an installed portal: ``{client_endpoint}{method}`` with ``auth=<token>``.
    The endpoint is the one the OAuth server confirmed at install, never one from an event."""

    def __init__(self, tokens: AppTokens, client_endpoint: str) -> None:
        self.tokens = tokens
        self.client_endpoint = client_endpoint

    @property
    def portal(self) -> str:
        return self.tokens.portal

    def target(self, method: str) -> tuple[str, dict[str, str]]:
        return self.client_endpoint + method, {"auth": self.tokens.access_token()}

    def renew(self, rejected: Mapping[str, str]) -> bool:
        self.tokens.refresh(rejected.get("auth", ""))
        return True
