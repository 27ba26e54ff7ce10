"""Bitrix24 chat: one ``im.message.add`` per notice, to the notice's DIALOG_ID (``chat42``, ``sg7``,
a user id: docs/protocol.md §9)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from b24notify.channels.base import DeliveryError
from b24notify.channels.content import chat_text
from b24notify.channels.portal_errors import DEFAULT_SEND_SECONDS, classify_portal_error
from b24notify.channels.portal_errors import known_wait as known_wait  # workers/deliver.py imports it from here
from b24notify.notices import Notice
from b24notify.rest.client import MAX_BATCH, Answer, RestClient
from b24notify.rest.errors import B24Error

log = logging.getLogger(__name__)

METHOD = "im.message.add"

# im.message.add errors that no retry can fix (docs/protocol.md §9): the chat or user is wrong, or
# the message itself was refused.
PERMANENT_CHAT_ERRORS = frozenset({
    "MESSAGE_EMPTY", "USER_ID_EMPTY", "USER_NOT_FOUND", "CHAT_ID", "ACCESS_ERROR", "PARAMS_ERROR",
    "ATTACH_ERROR", "ATTACH_OVERSIZE", "KEYBOARD_ERROR", "MENU_ERROR",
})

LOOKBACK = 50  # messages read back per dialog when an earlier attempt may have posted already


class ChatChannel:
    name = "chat"

    def __init__(self, client: RestClient, *, send_seconds: float = DEFAULT_SEND_SECONDS) -> None:
        self.client = client
        self.send_seconds = send_seconds

    def _params(self, notice: Notice) -> dict[str, Any]:
        return {"DIALOG_ID": notice.target.address, "MESSAGE": chat_text(notice), "URL_PREVIEW": "N"}

    def send(self, notice: Notice, *, deadline: float | None = None) -> None:
        # ``deadline`` is not needed: the REST client's own timeout bounds the request, and a chat
        # send cut short is found by ``find_posted`` before it is posted again.
        try:
            self.client.call(METHOD, self._params(notice), idempotent=False)
        except B24Error as exc:
            raise classify_chat_error(exc, whole_request=True) from exc

    def send_many(self, notices: Sequence[Notice]) -> list[DeliveryError | None]:
        """Up to 50 messages in one ``batch`` request (any mix of dialogs); each gets its own outcome."""
        outcomes: list[DeliveryError | None] = []
        for start in range(0, len(notices), MAX_BATCH):
            chunk = notices[start:start + MAX_BATCH]
            calls = {f"m{i}": (METHOD, self._params(n)) for i, n in enumerate(chunk)}
            try:
                answers = self.client.batch(calls, idempotent=False)
            except B24Error as exc:
                outcomes += [classify_chat_error(exc, whole_request=True)] * len(chunk)
                continue
            for key in calls:
                answer = answers[key]
                outcomes.append(classify_chat_error(answer) if isinstance(answer, B24Error) else None)
        return outcomes

    def find_posted(self, notices: Sequence[Notice]) -> set[str]:
        """The keys of those notices whose message is among their dialog's latest 50: an attempt
        that died after the portal stored the message (docs/guarantees.md) must not post it again.

        Made only when an earlier attempt's outcome is unknown: one ``im.dialog.messages.get`` per
        dialog among them, all in one request (one ``batch`` when there are several, at most 50:
        workers/deliver.py hands over at most one batch of notices). A ``B24Error`` of the request
        itself raises; a dialog whose read alone fails counts as holding none of them (sending
        again risks a repeat, not sending risks a loss)."""
        by_dialog: dict[str, list[Notice]] = {}
        for notice in notices:
            by_dialog.setdefault(notice.target.address, []).append(notice)
        dialogs = list(by_dialog)
        posted: set[str] = set()
        for start in range(0, len(dialogs), MAX_BATCH):
            chunk = dialogs[start:start + MAX_BATCH]
            for dialog, answer in self._read_dialogs(chunk).items():
                if isinstance(answer, B24Error):
                    if known_wait(answer) is not None:
                        raise answer
                    log.warning("event=chat.lookup_failed dialog=%s code=%s", dialog, answer.code)
                    continue
                texts = _texts(answer)
                posted |= {n.key for n in by_dialog[dialog] if _normal(chat_text(n)) in texts}
        return posted

    def _read_dialogs(self, dialogs: Sequence[str]) -> dict[str, Any]:
        """Each dialog's latest messages (the ``result``), or the error that read ended with."""
        if len(dialogs) == 1:
            return {dialogs[0]: self.client.call("im.dialog.messages.get", _lookback(dialogs[0]))}
        calls = {f"d{i}": ("im.dialog.messages.get", _lookback(d)) for i, d in enumerate(dialogs)}
        answers = self.client.batch(calls)
        read = {dialog: answers[f"d{i}"] for i, dialog in enumerate(dialogs)}
        return {dialog: (a.result if isinstance(a, Answer) else a) for dialog, a in read.items()}


def _lookback(dialog: str) -> dict[str, Any]:
    return {"DIALOG_ID": dialog, "LIMIT": LOOKBACK}


def _texts(result: Any) -> set[str]:
    messages = result.get("messages") if isinstance(result, dict) else None
    return {_normal(str(m.get("text") or "")) for m in messages or [] if isinstance(m, dict)}


def _normal(text: str) -> str:
    return " ".join(text.split())


def classify_chat_error(exc: B24Error, *, whole_request: bool = False) -> DeliveryError:
    return classify_portal_error(exc, METHOD, PERMANENT_CHAT_ERRORS, whole_request=whole_request)
