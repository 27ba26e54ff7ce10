"""Bitrix24 chat: one ``im.message.add`` per alert to the configured DIALOG_ID."""

from __future__ import annotations

from b24notify.alerts import Alert
from b24notify.channels.base import PermanentDeliveryError, RetryableDeliveryError
from b24notify.render.chat import render_chat
from b24notify.rest.client import RestClient
from b24notify.rest.errors import B24Error, Policy

# im.message.add errors that no retry can fix (PROTOCOL.md §9): the chat or user is wrong, or
# the message itself was refused.
PERMANENT_CHAT_ERRORS = frozenset({
    "MESSAGE_EMPTY", "USER_ID_EMPTY", "USER_NOT_FOUND", "CHAT_ID", "ACCESS_ERROR", "PARAMS_ERROR",
    "ATTACH_ERROR", "ATTACH_OVERSIZE", "KEYBOARD_ERROR", "MENU_ERROR",
})


class ChatChannel:
    name = "chat"

    def __init__(self, client: RestClient, dialog_id: str) -> None:
        self.client = client
        self.dialog_id = dialog_id

    def send(self, alert: Alert) -> None:
        params = {
            "DIALOG_ID": self.dialog_id,
            "MESSAGE": render_chat(alert),
            "URL_PREVIEW": "N",
        }
        try:
            self.client.call("im.message.add", params)
        except B24Error as exc:
            reason = f"im.message.add {exc.code}: {exc.description}"[:300]
            if exc.code in PERMANENT_CHAT_ERRORS or exc.policy is Policy.REJECTED:
                raise PermanentDeliveryError(reason) from exc
            # Rate limits, outages and credential problems can all end: retry on the schedule and
            # dead-letter only when the schedule runs out.
            raise RetryableDeliveryError(reason) from exc
