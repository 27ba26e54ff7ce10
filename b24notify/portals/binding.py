"""Subscribing a portal to the events b24notify needs.

App mode: ``event.bind`` for the six task events and ``ONAPPUNINSTALL``, after ``event.get`` so
that running it again binds nothing twice (the portal refuses a duplicate handler anyway, with
``ERROR_CORE``). Webhook mode cannot bind by REST (``event.bind`` needs an app, docs/protocol.md §10):
the operator creates an outbound webhook in the portal, and :func:`webhook_setup_steps` says how.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from b24notify.events import APP_UNINSTALL, EventType
from b24notify.portals.spec import PortalSpec
from b24notify.rest.client import RestClient
from b24notify.rest.errors import B24Error

WEBHOOK_PATH = "/webhooks/bitrix24"
APP_EVENTS: tuple[str, ...] = (*(e.value for e in EventType), APP_UNINSTALL)


@dataclass(frozen=True)
class BindReport:
    already: tuple[str, ...]
    bound: tuple[str, ...]
    failed: Mapping[str, str]  # event -> error code

    @property
    def ok(self) -> bool:
        return not self.failed


def handler_url(public_url: str) -> str:
    return public_url.rstrip("/") + WEBHOOK_PATH


def missing_events(existing: Iterable[Mapping[str, Any]], handler: str,
                   wanted: Sequence[str] = APP_EVENTS) -> list[str]:
    """The wanted events not yet bound to ``handler`` (names compared case-insensitively)."""
    have = {str(b.get("event", "")).upper() for b in existing
            if isinstance(b, Mapping) and str(b.get("handler", "")).rstrip("/") == handler.rstrip("/")}
    return [event for event in wanted if event.upper() not in have]


def bind_events(client: RestClient, handler: str) -> BindReport:
    """``event.get``, then one ``batch`` of ``event.bind`` for what is missing: two requests."""
    existing = client.call("event.get")
    missing = missing_events(existing if isinstance(existing, list) else [], handler)
    if not missing:
        return BindReport(already=APP_EVENTS, bound=(), failed={})
    calls = {f"bind_{event.lower()}": ("event.bind", {"event": event, "handler": handler}) for event in missing}
    answers = client.batch(calls)
    failed = {calls[key][1]["event"]: answer.code for key, answer in answers.items() if isinstance(answer, B24Error)}
    bound = tuple(event for event in missing if event not in failed)
    return BindReport(already=tuple(e for e in APP_EVENTS if e not in missing), bound=bound, failed=failed)


def webhook_setup_steps(spec: PortalSpec, public_url: str | None) -> str:
    target = handler_url(public_url) if public_url else f"https://YOUR-HOST{WEBHOOK_PATH}"
    events = ", ".join(e.value for e in EventType)
    return "\n".join([
        f"Portal {spec.key} (inbound webhook mode): Bitrix24 cannot bind events over REST without an app.",
        f"  1. Open {spec.portal_url}/devops/ (Applications > Developer resources > Other > Outbound webhook).",
        f"  2. Handler URL: {target}",
        f"  3. Events: {events}",
        "  4. Save, then copy the Application token it shows into B24_APPLICATION_TOKEN "
        "(or the portal's application_token in B24NOTIFY_CONFIG) and restart web and workers.",
        "  5. Check: b24notify doctor",
    ])
