"""Personal notifications: ``im.notify.system.add`` to one person (docs/protocol.md §9).

Each notification carries a TAG made from the notice's key (its changes and its recipient). The
portal keeps one notification per TAG within the app, so a repeated send replaces the first one
instead of doubling it: the channel is ``repeat_safe`` and needs no look-up. The TAG must name the
recipient too: one TAG for two people would make the second notification delete the first one's.
Through a webhook the portal accepts a TAG only together with a CLIENT_ID (the "app" the TAG is
unique within).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from b24notify.channels.base import DeliveryError, PermanentDeliveryError
from b24notify.channels.content import chat_text
from b24notify.channels.portal_errors import DEFAULT_SEND_SECONDS, classify_portal_error
from b24notify.notices import Notice
from b24notify.rest.client import MAX_BATCH, RestClient
from b24notify.rest.errors import B24Error

METHOD = "im.notify.system.add"
TAG_PREFIX = "b24n:"

# im.notify.system.add errors that no retry can fix (docs/protocol.md §9). WRONG_AUTH_TYPE (a
# session token) is in the policy table as "stop the portal"; for a notification it is final.
PERMANENT_NOTIFY_ERRORS = frozenset({
    "USER_ID_EMPTY", "MESSAGE_EMPTY", "ATTACH_OVERSIZE", "ATTACH_ERROR", "WRONG_AUTH_TYPE",
})


def notification_tag(notice: Notice) -> str:
    """Short and stable: the same notice always gets the same TAG, two notices (other changes, or
    another recipient) never share one."""
    return TAG_PREFIX + hashlib.sha256(notice.key.encode("utf-8")).hexdigest()[:32]


class PersonalChannel:
    name = "notify"
    repeat_safe = True  # same TAG: a repeat replaces the notification (see the module docstring)

    def __init__(self, client: RestClient, *, client_id: str, send_seconds: float = DEFAULT_SEND_SECONDS) -> None:
        """``client_id``: "b24notify" for a webhook portal, the app's client id for an app install."""
        if not client_id.strip():
            raise ValueError("PersonalChannel needs a CLIENT_ID")
        self.client = client
        self.client_id = client_id
        self.send_seconds = send_seconds

    def _params(self, notice: Notice) -> dict[str, Any]:
        return {
            "USER_ID": notice.target.user_id,
            "MESSAGE": chat_text(notice),
            "TAG": notification_tag(notice),
            "CLIENT_ID": self.client_id,
        }

    def send(self, notice: Notice, *, deadline: float | None = None) -> None:
        # ``deadline`` is not needed: the REST client's own timeout bounds the request, and a send
        # cut short is simply sent again (same TAG).
        _check_target(notice)
        try:
            result = self.client.call(METHOD, self._params(notice), idempotent=False)
        except B24Error as exc:
            raise classify_notify_error(exc, whole_request=True) from exc
        error = _check_created(notice, result)
        if error is not None:
            raise error

    def send_many(self, notices: Sequence[Notice]) -> list[DeliveryError | None]:
        """Up to 50 notifications in one ``batch`` request; each gets its own outcome."""
        outcomes: list[DeliveryError | None] = []
        for start in range(0, len(notices), MAX_BATCH):
            chunk = notices[start:start + MAX_BATCH]
            early: dict[int, DeliveryError] = {}
            calls: dict[str, tuple[str, dict[str, Any]]] = {}
            for i, notice in enumerate(chunk):
                try:
                    _check_target(notice)
                except PermanentDeliveryError as exc:
                    early[i] = exc
                    continue
                calls[f"n{i}"] = (METHOD, self._params(notice))
            try:
                answers = self.client.batch(calls, idempotent=False)
            except B24Error as exc:
                whole = classify_notify_error(exc, whole_request=True)
                outcomes += [early.get(i, whole) for i in range(len(chunk))]
                continue
            for i, notice in enumerate(chunk):
                if i in early:
                    outcomes.append(early[i])
                    continue
                answer = answers[f"n{i}"]
                if isinstance(answer, B24Error):
                    outcomes.append(classify_notify_error(answer))
                else:
                    outcomes.append(_check_created(notice, answer.result))
        return outcomes


def _check_target(notice: Notice) -> None:
    if notice.target.user_id <= 0:
        raise PermanentDeliveryError(f"{METHOD}: the notice names no person (user id {notice.target.user_id})")


def _check_created(notice: Notice, result: Any) -> DeliveryError | None:
    """The portal answers the new notification's id, or ``false`` when it created none."""
    if result is False or result is None or result == 0 or result == "":
        return PermanentDeliveryError(f"{METHOD} answered {result!r}: the portal created no notification "
                                      f"for user {notice.target.user_id}")
    return None


def classify_notify_error(exc: B24Error, *, whole_request: bool = False) -> DeliveryError:
    return classify_portal_error(exc, METHOD, PERMANENT_NOTIFY_ERRORS, whole_request=whole_request)
