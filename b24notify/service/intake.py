"""From an HTTP request to a checked TaskEvent, or a clear rejection. Pure apart from reading the
body; the web app turns a Rejection into a JSON answer and changes nothing.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect, Request

from b24notify.events import EventAuth, IgnoredEvent, MalformedEvent, MissingToken, TaskEvent, auth_of, parse_event
from b24notify.phpform import FormError, parse_php_query

MAX_BODY_BYTES = 64 * 1024
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass(frozen=True)
class Rejection(Exception):
    status: int
    reason: str  # machine-readable, also the metrics outcome
    detail: str  # for the operator reading the portal's or the proxy's log


@dataclass(frozen=True)
class PortalIdentity:
    """What a genuine event for our portal carries (docs/protocol.md §1 "Verifying application_token")."""

    application_token: str
    domain: str  # host[:port] of the configured webhook URL
    member_id: str | None = None


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > MAX_BODY_BYTES:
                raise Rejection(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
        except ValueError:
            raise Rejection(400, "bad_request", "Content-Length is not a number") from None
    # The ASGI messages read directly: Request.stream()'s async generator cost more than the rest
    # of this function for a one-message body, the usual case.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Rejection(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
        if not message.get("more_body", False):
            return chunk if not chunks else b"".join([*chunks, chunk])
        chunks.append(chunk)


def decode_payload(content_type: str, body: bytes) -> dict[str, Any]:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == FORM:
        try:
            return parse_php_query(body)
        except FormError as exc:
            raise Rejection(400, "malformed", f"form body: {exc}") from None
    if media == JSON:
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise Rejection(400, "malformed", "body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise Rejection(400, "malformed", "JSON body must be an object")
        return payload
    raise Rejection(415, "unsupported_media_type", f"send {FORM} (as Bitrix24 does) or {JSON}")


def authenticate(payload: dict[str, Any], portal: PortalIdentity, auth: EventAuth | None = None) -> None:
    """Token first, in constant time; then the portal identity. Nothing from ``auth`` is ever used
    to reach the portal (``auth[client_endpoint]`` is ignored by design). ``auth``: the payload's,
    when the caller has read it already (``auth_of(payload)``); otherwise read here."""
    try:
        auth = auth if auth is not None else auth_of(payload)
    except MissingToken:
        raise Rejection(401, "missing_token", "auth[application_token] is missing") from None
    except MalformedEvent as exc:
        raise Rejection(401, "missing_token", str(exc)) from None
    if not hmac.compare_digest(_bytes(auth.application_token), _bytes(portal.application_token)):
        raise Rejection(401, "bad_token", "auth[application_token] does not match B24_APPLICATION_TOKEN")
    if auth.domain and auth.domain.lower() != portal.domain and auth.domain.lower() != portal.domain.split(":")[0]:
        raise Rejection(403, "wrong_portal", "auth[domain] is not the configured portal")
    if portal.member_id:
        # A portal known by its member_id (B24_MEMBER_ID, a TOML portal's member_id, an app install)
        # must be named by it: every genuine event carries auth[member_id] (docs/protocol.md §1).
        if not auth.member_id:
            raise Rejection(403, "wrong_portal", "auth[member_id] is missing; this portal's events must carry it")
        if not hmac.compare_digest(_bytes(auth.member_id), _bytes(portal.member_id)):
            raise Rejection(403, "wrong_portal", "auth[member_id] is not the configured portal")


def to_event(payload: dict[str, Any], auth: EventAuth | None = None) -> TaskEvent | IgnoredEvent:
    try:
        return parse_event(payload, auth)
    except MalformedEvent as exc:
        raise Rejection(400, "malformed", str(exc)) from None


def _bytes(text: str) -> bytes:
    # JSON can carry lone surrogates ("\ud800"); they must compare unequal, not crash the request.
    return text.encode("utf-8", "surrogatepass")
