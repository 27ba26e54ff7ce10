"""Bitrix24 chat: one ``im.message.add`` per alert to the configured DIALOG_ID."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from b24notify.alerts import Alert
from b24notify.channels.base import DeliveryDeferred, DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from b24notify.render.chat import render_chat
from b24notify.rest.client import MAX_BATCH, RestClient
from b24notify.rest.errors import (
    B24Error,
    BudgetSpent,
    OperationTimeLimit,
    Policy,
    QueryLimitExceeded,
    ServerError,
    TransportError,
)

# im.message.add errors that no retry can fix (docs/protocol.md §9): the chat or user is wrong, or
# the message itself was refused.
PERMANENT_CHAT_ERRORS = frozenset({
    "MESSAGE_EMPTY", "USER_ID_EMPTY", "USER_NOT_FOUND", "CHAT_ID", "ACCESS_ERROR", "PARAMS_ERROR",
    "ATTACH_ERROR", "ATTACH_OVERSIZE", "KEYBOARD_ERROR", "MENU_ERROR",
})


LOOKBACK = 50  # messages read back when an earlier attempt may have posted already

# One request's worst case at the default settings: the REST timeout (B24NOTIFY_REST_TIMEOUT_SECONDS,
# 20 s) plus the longest the fleet's budget makes a caller sleep before it says BUDGET_SPENT (5 s).
DEFAULT_SEND_SECONDS = 25.0


class ChatChannel:
    name = "chat"

    def __init__(self, client: RestClient, dialog_id: str, *, send_seconds: float = DEFAULT_SEND_SECONDS) -> None:
        self.client = client
        self.dialog_id = dialog_id
        self.send_seconds = send_seconds

    def _params(self, alert: Alert) -> dict[str, Any]:
        return {"DIALOG_ID": self.dialog_id, "MESSAGE": render_chat(alert), "URL_PREVIEW": "N"}

    def send(self, alert: Alert, *, deadline: float | None = None) -> None:
        # ``deadline`` is not needed: the REST client's own timeout bounds the request, and a chat
        # send cut short is found by ``find_posted`` before it is posted again.
        try:
            self.client.call("im.message.add", self._params(alert), idempotent=False)
        except B24Error as exc:
            raise classify_chat_error(exc, whole_request=True) from exc

    def find_posted(self, alerts: Sequence[Alert]) -> set[str]:
        """The keys of those alerts whose message is among the dialog's latest 50: an attempt that
        died after the portal stored the message (docs/guarantees.md) must not post it again.
        One ``im.dialog.messages.get``, made only when an earlier attempt's outcome is unknown."""
        answer = self.client.call("im.dialog.messages.get", {"DIALOG_ID": self.dialog_id, "LIMIT": LOOKBACK})
        messages = answer.get("messages") if isinstance(answer, dict) else None
        texts = {_normal(str(m.get("text") or "")) for m in messages or [] if isinstance(m, dict)}
        return {alert.key for alert in alerts if _normal(render_chat(alert)) in texts}

    def send_many(self, alerts: Sequence[Alert]) -> list[DeliveryError | None]:
        """Up to 50 messages in one ``batch`` request; each gets its own outcome."""
        outcomes: list[DeliveryError | None] = []
        for start in range(0, len(alerts), MAX_BATCH):
            chunk = alerts[start:start + MAX_BATCH]
            calls = {f"m{i}": ("im.message.add", self._params(a)) for i, a in enumerate(chunk)}
            try:
                answers = self.client.batch(calls, idempotent=False)
            except B24Error as exc:
                outcomes += [classify_chat_error(exc, whole_request=True)] * len(chunk)
                continue
            for key in calls:
                answer = answers[key]
                outcomes.append(classify_chat_error(answer) if isinstance(answer, B24Error) else None)
        return outcomes


def _normal(text: str) -> str:
    return " ".join(text.split())


def classify_chat_error(exc: B24Error, *, whole_request: bool = False) -> DeliveryError:
    reason = f"im.message.add {exc.code}: {exc.description}"[:300]
    wait = known_wait(exc)
    if wait is not None:
        return DeliveryDeferred(reason, wait)
    if exc.code in PERMANENT_CHAT_ERRORS or exc.policy is Policy.REJECTED:
        return PermanentDeliveryError(reason)
    if whole_request and isinstance(exc, TransportError | ServerError):
        return RetryableDeliveryError(reason, uncertain=True)
    if isinstance(exc, TransportError | ServerError | QueryLimitExceeded):
        return RetryableDeliveryError(reason)  # a passing fault: tried again within seconds first
    # Credential and access problems can end too, when someone acts: retry on the configured
    # schedule and dead-letter only when it runs out.
    return RetryableDeliveryError(reason, transient=False)


def known_wait(exc: B24Error) -> float | None:
    """Seconds until our own limits let the request go, when that is what stopped it: the fleet's
    REST budget (no request was sent), or a method paused until its time budget resets."""
    if isinstance(exc, BudgetSpent):
        return exc.wait
    if isinstance(exc, OperationTimeLimit) and exc.reset_at is not None:
        return exc.reset_at - time.time()
    return None
