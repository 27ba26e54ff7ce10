"""What the portal POSTs to an installed application (docs/protocol.md §1 "Application (event.bind)").

Form bodies like every event, but ``auth`` carries OAuth data: task events the access token of the
user whose action fired them, ONAPPINSTALL the installing user's token pair, ONAPPUNINSTALL no token
at all (the app's rights are gone by then; only ``application_token`` proves the sender).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from b24notify.devtools.simulator.events import PortalEvent
from b24notify.devtools.simulator.oauth import SERVER_ENDPOINT, TokenResponse
from b24notify.phpform import encode_php_query

ON_APP_INSTALL = "ONAPPINSTALL"
ON_APP_UNINSTALL = "ONAPPUNINSTALL"
INSTALL_DATA: dict[str, Any] = {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}
UNINSTALL_DATA: dict[str, Any] = {"LANGUAGE_ID": "en", "CLEAN": "0"}


def app_auth(
    token: TokenResponse, *, domain: str, application_token: str, with_refresh_token: bool = False
) -> dict[str, Any]:
    """The ``auth`` block of an application event. ``domain`` is the portal's: the token answer's
    own ``domain`` is the OAuth server's (§8)."""
    auth: dict[str, Any] = {
        "access_token": token["access_token"],
        "expires": token["expires"],
        "expires_in": token["expires_in"],
        "scope": token["scope"],
        "domain": domain,
        "server_endpoint": token["server_endpoint"],
        "status": token["status"],
        "client_endpoint": token["client_endpoint"],
        "member_id": token["member_id"],
        "user_id": token["user_id"],
    }
    # Only install-like events carry the refresh token (§1, the source's sendRefreshToken default).
    if with_refresh_token:
        auth["refresh_token"] = token["refresh_token"]
    auth["application_token"] = application_token
    return auth


def task_event_body(event: PortalEvent, *, handler_id: int, ts: int, auth: Mapping[str, Any]) -> str:
    return encode_php_query({
        "event": event.name,
        "event_handler_id": handler_id,
        "data": event.data(),
        "ts": ts,
        "auth": auth,
    })


def install_body(token: TokenResponse, *, domain: str, application_token: str, ts: int) -> str:
    # No event_handler_id: the install handler is the app's own setting, not an event.bind row.
    return encode_php_query({
        "event": ON_APP_INSTALL,
        "data": INSTALL_DATA,
        "ts": ts,
        "auth": app_auth(token, domain=domain, application_token=application_token, with_refresh_token=True),
    })


def uninstall_body(*, domain: str, client_endpoint: str, member_id: str, application_token: str, ts: int) -> str:
    return encode_php_query({
        "event": ON_APP_UNINSTALL,
        "data": UNINSTALL_DATA,
        "ts": ts,
        "auth": {
            "domain": domain,
            "server_endpoint": SERVER_ENDPOINT,
            "client_endpoint": client_endpoint,
            "member_id": member_id,
            "application_token": application_token,
        },
    })
