"""Parsing a decoded Bitrix24 outbound event into a typed :class:`TaskEvent`.

Input is the nested dict of one delivery: from a form body through
:func:`b24notify.phpform.parse_php_query` (every scalar a string), or from a JSON body (ints are
ints). Both are accepted. Pure: no I/O, no token check (the web layer compares
``auth[application_token]`` with the stored one, in constant time).

Where the ids live (docs/protocol.md §2, event table). ``data`` carries ids only, never fields:

| event | task id | comment id |
| --- | --- | --- |
| ``ONTASKADD``, ``ONTASKUPDATE`` | ``data[FIELDS_AFTER][ID]`` | |
| ``ONTASKDELETE`` | ``data[FIELDS_BEFORE][ID]`` (``FIELDS_AFTER`` is ``"undefined"``) | |
| ``ONTASKCOMMENTADD``, ``…UPDATE`` | ``data[FIELDS_AFTER][TASK_ID]`` | ``…[ID]`` |
| ``ONTASKCOMMENTDELETE`` | as above, else ``data[FIELDS_BEFORE][TASK_ID]`` | ``…[ID]`` |

The new task card (tasks ≥ 25.700.0) sends ``ONTASKCOMMENTADD`` with ``ID`` 0 and a chat
``MESSAGE_ID``: that gives ``comment_id=None`` and ``message_id`` set.

What we reject, and why only that: Bitrix24 never retries a delivery (docs/protocol.md §1 "Retries"),
so an event is refused only when we cannot act on it: no event name, no ``auth``, no usable task
id, or an id that is present but not a positive 64-bit integer. ``ts`` is informational; a
bad one becomes ``None``. A missing or zero comment or message id becomes ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

_ID_MAX = 2**63 - 1


class MalformedEvent(ValueError):
    """An event we cannot act on. The message is a short reason an operator can read."""


class MissingToken(MalformedEvent):
    """``auth`` or ``auth[application_token]`` is missing: the request cannot be authenticated."""


class EventType(StrEnum):
    ONTASKADD = "ONTASKADD"
    ONTASKUPDATE = "ONTASKUPDATE"
    ONTASKDELETE = "ONTASKDELETE"
    ONTASKCOMMENTADD = "ONTASKCOMMENTADD"
    ONTASKCOMMENTUPDATE = "ONTASKCOMMENTUPDATE"
    ONTASKCOMMENTDELETE = "ONTASKCOMMENTDELETE"


_COMMENT_EVENTS = frozenset({EventType.ONTASKCOMMENTADD, EventType.ONTASKCOMMENTUPDATE, EventType.ONTASKCOMMENTDELETE})


@dataclass(frozen=True)
class EventAuth:
    """The parts of ``auth[...]`` we keep. OAuth tokens that apps also receive are dropped.

    ``client_endpoint`` is kept only so a log line can say we ignored it: it is whatever the
    sender wrote, and the product must never call it. ``domain`` and ``member_id`` are ``""``
    when absent; the token lookup then simply fails.
    """

    domain: str
    member_id: str
    application_token: str = field(repr=False)
    client_endpoint: str | None = None


@dataclass(frozen=True)
class TaskEvent:
    type: EventType
    task_id: int
    comment_id: int | None  # None for task events and for the new card's ID 0
    message_id: int | None  # the chat message of a new-card comment
    ts: int | None  # when the queue sent it (unix s), as the sender claims
    auth: EventAuth


@dataclass(frozen=True)
class IgnoredEvent:
    """A well-formed event that is not about tasks, e.g. ``ONAPPINSTALL``. ``name`` is upper case."""

    name: str


def _show(value: object) -> str:
    """A short, safe rendering of a bad value for an error message."""
    if isinstance(value, str):
        return repr(value[:40]) + ("…" if len(value) > 40 else "")
    if isinstance(value, int) and value.bit_length() > 128:
        return "<a huge number>"  # str() of a huge int is slow, and refused past 4300 digits
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"<{type(value).__name__}>"


def _path(*parts: str) -> str:
    return parts[0] + "".join(f"[{part}]" for part in parts[1:])


def _as_int(value: object, what: str) -> int:
    """An integer from a JSON int, an integral float, or a form's decimal string."""
    if isinstance(value, bool):  # before int: True is an int, but never an id
        raise MalformedEvent(f"{what} {_show(value)} is not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise MalformedEvent(f"{what} {_show(value)} is not an integer")
        if abs(value) > _ID_MAX:
            raise MalformedEvent(f"{what} {_show(value)} is out of range")
        number = int(value)
    elif isinstance(value, str):
        # No regex here: "(-?)0*([0-9]+)" backtracks quadratically on "000…0x" (a hostile 60 kB
        # id stalled the event loop for seconds). Plain string checks are linear.
        sign, body = ("-", value[1:]) if value.startswith("-") else ("", value)
        if not body or not body.isascii() or not body.isdigit():
            raise MalformedEvent(f"{what} {_show(value)} is not an integer")
        digits = body.lstrip("0") or "0"
        if len(digits) > 19:  # checked before int(): no huge conversions on hostile input
            raise MalformedEvent(f"{what} {_show(value)} is out of range")
        number = int(sign + digits)
    else:
        raise MalformedEvent(f"{what} {_show(value)} is not an integer")
    if abs(number) > _ID_MAX:
        raise MalformedEvent(f"{what} {_show(value)} is out of range")
    return number


def _is_absent(value: object) -> bool:
    return value is None or value == ""  # PHP null arrives as "" in a form body


def _task_id(value: object) -> int:
    number = _as_int(value, "task id")
    if number <= 0:
        raise MalformedEvent(f"task id {_show(value)} is not positive")
    return number


def _optional_id(value: object, what: str) -> int | None:
    """Comment and message ids: absent or 0 (the new card's comment ``ID``) mean None."""
    if _is_absent(value):
        return None
    number = _as_int(value, what)
    if number < 0:
        raise MalformedEvent(f"{what} {_show(value)} is negative")
    return number or None


def _text(auth: Mapping[Any, Any], key: str) -> str | None:
    value = auth.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{_path('auth', key)} is not a string")
    return value


def auth_of(payload: Mapping[str, Any]) -> EventAuth:
    """The sender's credentials. Raises :class:`MissingToken` when there is no token to check."""
    auth = payload.get("auth") if isinstance(payload, Mapping) else None
    if not isinstance(auth, Mapping):
        raise MissingToken("auth is missing")
    token = auth.get("application_token")
    if not isinstance(token, str) or not token:
        raise MissingToken("auth[application_token] is missing")
    return EventAuth(
        domain=_text(auth, "domain") or "",
        member_id=_text(auth, "member_id") or "",
        application_token=token,
        client_endpoint=_text(auth, "client_endpoint"),
    )


def _fields(data: object, block: str) -> Mapping[Any, Any]:
    """``data[FIELDS_…]``, or an empty mapping where it is ``"undefined"`` or missing."""
    fields = data.get(block) if isinstance(data, Mapping) else None
    return fields if isinstance(fields, Mapping) else {}


def _ts(payload: Mapping[str, Any]) -> int | None:
    try:
        return _optional_id(payload.get("ts"), "ts")
    except MalformedEvent:
        return None  # informational only: never the reason to lose an event


def parse_event(payload: Mapping[str, Any], auth: EventAuth | None = None) -> TaskEvent | IgnoredEvent:
    """Parse one delivery. Raises :class:`MalformedEvent` (or :class:`MissingToken`). ``auth``:
    ``auth_of(payload)`` when the caller has it already (the web reads it once per event)."""
    if not isinstance(payload, Mapping):
        raise MalformedEvent("event payload is not an object")
    if auth is None:
        auth = auth_of(payload)  # first: a sender without a token learns nothing more
    name = payload.get("event")
    if _is_absent(name) or (isinstance(name, str) and not name.strip()):
        raise MalformedEvent("event name is missing")
    if not isinstance(name, str):
        raise MalformedEvent("event name is not a string")
    name = name.strip().upper()  # the portal sends upper case (docs/protocol.md §1); be lenient
    try:
        event_type = EventType(name)
    except ValueError:
        return IgnoredEvent(name)

    data = payload.get("data")
    if event_type not in _COMMENT_EVENTS:
        block = "FIELDS_BEFORE" if event_type is EventType.ONTASKDELETE else "FIELDS_AFTER"
        task_id = _fields(data, block).get("ID")
        if _is_absent(task_id):
            raise MalformedEvent(f"{_path('data', block, 'ID')} is missing")
        return TaskEvent(event_type, _task_id(task_id), None, None, _ts(payload), auth)

    block = "FIELDS_AFTER"
    fields = _fields(data, block)
    if _is_absent(fields.get("TASK_ID")) and event_type is EventType.ONTASKCOMMENTDELETE:
        # FIELDS_BEFORE still names the deleted comment and its task (docs/protocol.md §2, event table).
        block = "FIELDS_BEFORE"
        fields = _fields(data, block)
    task_id = fields.get("TASK_ID")
    if _is_absent(task_id):
        raise MalformedEvent(f"{_path('data', block, 'TASK_ID')} is missing")
    return TaskEvent(
        type=event_type,
        task_id=_task_id(task_id),
        comment_id=_optional_id(fields.get("ID"), "comment id"),
        message_id=_optional_id(fields.get("MESSAGE_ID"), "message id"),
        ts=_ts(payload),
        auth=auth,
    )


APP_INSTALL = "ONAPPINSTALL"
APP_UNINSTALL = "ONAPPUNINSTALL"


@dataclass(frozen=True)
class AppInstallEvent:
    """``ONAPPINSTALL``: what the portal claims about itself. Nothing here is trusted until the
    OAuth server confirms it by refreshing ``refresh_token`` (``service/installs.py``)."""

    domain: str
    member_id: str
    client_endpoint: str
    user_id: int
    application_token: str = field(repr=False)
    refresh_token: str = field(repr=False)


@dataclass(frozen=True)
class AppUninstallEvent:
    """``ONAPPUNINSTALL`` carries no tokens: the stored application token is the only check."""

    domain: str
    member_id: str
    application_token: str = field(repr=False)


def app_event_name(payload: Mapping[str, Any]) -> str | None:
    name = payload.get("event") if isinstance(payload, Mapping) else None
    if isinstance(name, str) and name.strip().upper() in (APP_INSTALL, APP_UNINSTALL):
        return name.strip().upper()
    return None


def parse_app_event(payload: Mapping[str, Any]) -> AppInstallEvent | AppUninstallEvent:
    """Parse ``ONAPPINSTALL`` / ``ONAPPUNINSTALL``. Raises MalformedEvent / MissingToken."""
    auth_block = payload.get("auth")
    auth = auth_of(payload)
    if not auth.domain or not auth.member_id:
        raise MalformedEvent("auth[domain] and auth[member_id] are required")
    assert isinstance(auth_block, Mapping)
    if app_event_name(payload) == APP_UNINSTALL:
        return AppUninstallEvent(auth.domain.lower(), auth.member_id, auth.application_token)
    refresh = _text(auth_block, "refresh_token")
    if not refresh:
        raise MalformedEvent("auth[refresh_token] is missing")
    if not auth.client_endpoint:
        raise MalformedEvent("auth[client_endpoint] is missing")
    user = auth_block.get("user_id")
    return AppInstallEvent(
        domain=auth.domain.lower(), member_id=auth.member_id, client_endpoint=auth.client_endpoint,
        user_id=0 if _is_absent(user) else max(0, _as_int(user, "auth[user_id]")),
        application_token=auth.application_token, refresh_token=refresh,
    )
