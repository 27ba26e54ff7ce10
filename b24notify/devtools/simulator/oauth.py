"""The OAuth authority: an in-process stand-in for ``oauth.bitrix.info`` (docs/protocol.md §8).

One authority serves one application (one ``client_id``) on any number of portals, so several
simulators in one process may share it: each is a portal of the same app, told apart by
``member_id``. The rules follow the real service:

- an access token lives ``access_ttl_seconds`` (1 hour);
- a refresh answers a NEW access token and a NEW refresh token; the refresh token just used is
  spent, and using it again is ``invalid_grant``;
- access tokens issued earlier stay valid until they expire, a refresh does not cancel them;
- uninstalling the app from a portal (``revoke_portal``) kills every token of that portal.

Uvicorn serves each simulator from its own thread, so all state sits behind one lock.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

# What the real service answers in ``server_endpoint`` and ``domain`` (docs/protocol.md §8).
SERVER_ENDPOINT = "https://oauth.bitrix.info/rest/"
OAUTH_DOMAIN = "oauth.bitrix.info"
SCOPE = "task,im,user"
STATUS_LOCAL = "L"
MAX_LOGGED_REQUESTS = 1000


class TokenResponse(TypedDict):
    """The JSON body of ``/oauth/token/``, key for key as docs/protocol.md §8 lists it."""

    access_token: str
    refresh_token: str
    expires: int
    expires_in: int
    client_endpoint: str
    server_endpoint: str
    domain: str
    member_id: str
    scope: str
    status: str
    user_id: int


@dataclass(frozen=True)
class Grant:
    """Who an access token speaks for."""

    member_id: str
    user_id: int


class OAuthError(Exception):
    """A refused token request: ``invalid_request``, ``invalid_client`` or ``invalid_grant``."""

    def __init__(self, code: str, description: str) -> None:
        self.code = code
        self.description = description
        super().__init__(f"{code}: {description}")

    def body(self) -> dict[str, str]:
        return {"error": self.code, "error_description": self.description}


class TokenRejected(Exception):
    """An access token that does not authorise a call: ``invalid_token`` or ``expired_token``."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


class PortalConflict(ValueError):
    """Two portals of one authority claimed the same ``member_id``."""


@dataclass(frozen=True)
class TokenRequest:
    """One request to the token endpoint, as the log keeps it: never a secret."""

    seq: int
    at: float
    grant_type: str
    outcome: str  # "ok" or the error code
    member_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Portal:
    domain: str
    client_endpoint: str


@dataclass
class _AccessToken:
    grant: Grant
    expires_at: float


class OAuthAuthority:
    def __init__(
        self,
        client_id: str = "app.sim.1",
        client_secret: str = "sim-app-secret",
        access_ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.access_ttl_seconds = access_ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._portals: dict[str, _Portal] = {}
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, Grant] = {}  # live refresh tokens; a used one is removed
        self._seq = itertools.count(1)
        self._requests: deque[TokenRequest] = deque(maxlen=MAX_LOGGED_REQUESTS)
        self.refreshes = 0
        self.invalid_grants = 0

    # -- what a portal asks of the authority ---------------------------------------------------------

    def issue(self, member_id: str, domain: str, client_endpoint: str, user_id: int) -> TokenResponse:
        """A fresh token pair for ``user_id`` on the portal ``member_id`` (the app is installed there,
        or a portal needs a token to put in an event). Raises PortalConflict when ``member_id``
        already belongs to a portal with another domain."""
        with self._lock:
            known = self._portals.get(member_id)
            if known is not None and known.domain != domain:
                raise PortalConflict(f"member_id {member_id} already belongs to the portal {known.domain}; "
                                     "give each simulator sharing an authority its own member_id")
            portal = self._portals[member_id] = _Portal(domain, client_endpoint)
            return self._new_pair(Grant(member_id, user_id), portal)

    def check(self, access_token: str) -> Grant:
        """Who the token speaks for; raises TokenRejected when it is unknown, revoked or expired."""
        with self._lock:
            token = self._access.get(access_token)
            if token is None:
                raise TokenRejected("invalid_token")
            if self._clock() >= token.expires_at:
                raise TokenRejected("expired_token")
            return token.grant

    def revoke_portal(self, member_id: str) -> None:
        """The app was uninstalled from this portal: none of its tokens works any more."""
        with self._lock:
            self._portals.pop(member_id, None)
            self._access = {k: t for k, t in self._access.items() if t.grant.member_id != member_id}
            self._refresh = {k: g for k, g in self._refresh.items() if g.member_id != member_id}

    def expire_all(self) -> None:
        """Every access token issued so far is expired from now on; refresh tokens still work."""
        with self._lock:
            now = self._clock()
            for token in self._access.values():
                token.expires_at = min(token.expires_at, now)

    # -- the token endpoint -------------------------------------------------------------------------

    def token_request(self, params: Mapping[str, str]) -> TokenResponse:
        """One request to ``/oauth/token/`` (its query or form fields); raises OAuthError.

        Only ``grant_type=refresh_token`` is served: the first tokens come with ONAPPINSTALL."""
        grant_type = params.get("grant_type", "")
        missing = [name for name in ("grant_type", "client_id", "client_secret", "refresh_token")
                   if not params.get(name)]
        problem = (f"missing parameter: {missing[0]}" if missing else
                   None if grant_type == "refresh_token" else "the simulator serves only grant_type=refresh_token")
        if problem is not None:
            with self._lock:
                self._log(grant_type[:40], "invalid_request")
            raise OAuthError("invalid_request", problem)
        return self.refresh(params["client_id"], params["client_secret"], params["refresh_token"])

    def refresh(self, client_id: str, client_secret: str, refresh_token: str) -> TokenResponse:
        """``grant_type=refresh_token``: a new pair for the refresh token's grant; raises OAuthError."""
        with self._lock:
            if client_id != self.client_id or not secrets.compare_digest(
                    client_secret.encode(), self._client_secret.encode()):
                self._log("refresh_token", "invalid_client")
                raise OAuthError("invalid_client", "Invalid client credentials")
            grant = self._refresh.pop(refresh_token, None)
            portal = self._portals.get(grant.member_id) if grant is not None else None
            if grant is None or portal is None:
                self.invalid_grants += 1
                self._log("refresh_token", "invalid_grant")
                raise OAuthError("invalid_grant", "The refresh token is invalid, revoked or already used")
            self.refreshes += 1
            self._log("refresh_token", "ok", grant.member_id)
            return self._new_pair(grant, portal)

    def requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    # -- inside the lock ----------------------------------------------------------------------------

    def _new_pair(self, grant: Grant, portal: _Portal) -> TokenResponse:
        now = self._clock()
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        self._access[access] = _AccessToken(grant, now + self.access_ttl_seconds)
        self._refresh[refresh] = grant
        return TokenResponse(
            access_token=access,
            refresh_token=refresh,
            expires=int(now + self.access_ttl_seconds),
            expires_in=int(self.access_ttl_seconds),
            client_endpoint=portal.client_endpoint,
            server_endpoint=SERVER_ENDPOINT,
            domain=OAUTH_DOMAIN,
            member_id=grant.member_id,
            scope=SCOPE,
            status=STATUS_LOCAL,
            user_id=grant.user_id,
        )

    def _log(self, grant_type: str, outcome: str, member_id: str | None = None) -> None:
        self._requests.append(TokenRequest(next(self._seq), self._clock(), grant_type, outcome, member_id))
