"""Who a REST call acts as, and the OAuth half of the portal's auth check (docs/protocol.md §8).

A call comes through the incoming webhook (``/rest/{user}/{code}/{method}``, acting as the
webhook's user) or with an application's access token (``/rest/{method}?auth=…``, acting as the
token's user). Some methods care which (``event.*`` is app-only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from b24notify.devtools.simulator.errors import RestError
from b24notify.devtools.simulator.oauth import OAuthAuthority, TokenRejected
from b24notify.devtools.simulator.params import Params

AUTH_PARAM = "auth"


@dataclass(frozen=True)
class Caller:
    user_id: int
    oauth: bool = False  # True: an application's access token, not the incoming webhook
    client_id: str = ""  # the application's client id (OAuth calls); a webhook has none


def authenticate(authority: OAuthAuthority, token: Any, member_id: str) -> Caller:
    """The caller an access token stands for on the portal ``member_id``; raises the portal's 401."""
    if token is None or token == "":
        raise RestError("NO_AUTH_FOUND")
    if not isinstance(token, str):
        raise RestError("invalid_token")
    try:
        grant = authority.check(token)
    except TokenRejected as rejected:
        raise RestError(rejected.code) from None
    if grant.member_id != member_id:  # a token of another portal of the same app
        raise RestError("invalid_token")
    return Caller(grant.user_id, oauth=True, client_id=authority.client_id)


def without_auth(params: Params) -> dict[str, Any]:
    """The params with the access token taken out, also from a batch's commands: a batch runs its
    commands with its own token, and the token must never reach the call log."""
    cleaned = {key: value for key, value in params.items() if key != AUTH_PARAM}
    commands = cleaned.get("cmd")
    if isinstance(commands, dict):
        cleaned["cmd"] = {key: _command_without_auth(command) for key, command in commands.items()}
    elif isinstance(commands, list):
        cleaned["cmd"] = [_command_without_auth(command) for command in commands]
    return cleaned


def _command_without_auth(command: Any) -> Any:
    if not isinstance(command, str) or "?" not in command:
        return command
    method, _, query = command.partition("?")
    kept = [pair for pair in query.split("&") if unquote_plus(pair.partition("=")[0]) != AUTH_PARAM]
    return f"{method}?{'&'.join(kept)}" if kept else method
