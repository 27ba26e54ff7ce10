"""What every delivery channel is: something that sends one notice (the alerts of one sync of one
task, for one recipient: notices.py), or says why it could not.

A channel sorts its failures so the job can apply one policy: a retryable error (the server is
busy, down or greylisting) is tried again later; a permanent one (address unknown, credentials
wrong, message rejected) is recorded and never retried; and a deferral (our own limits said
"not yet", nothing was sent) is no failure at all: it runs again when the wait is over.
"""

from __future__ import annotations

from typing import Protocol

from b24notify.notices import Notice


class DeliveryError(Exception):
    """An alert was not delivered. ``reason`` is safe to log: it never holds a secret."""

    retryable: bool = False

    def __init__(self, reason: str, *, uncertain: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # No answer came back (timeout, dropped connection, 5xx on the request itself): the
        # channel may have delivered it. The next attempt looks before it sends again.
        self.uncertain = uncertain


class RetryableDeliveryError(DeliveryError):
    """Trying again later may work."""

    retryable = True

    def __init__(self, reason: str, *, uncertain: bool = False, transient: bool = True) -> None:
        super().__init__(reason, uncertain=uncertain)
        # A passing fault (a 5xx, a timeout, a dropped connection, an SMTP 4xx reply, a full
        # bucket) usually passes within seconds, so it is tried again within seconds first
        # (workers/retries.py). False for trouble that someone must fix (credentials, access).
        self.transient = transient


class DeliveryDeferred(DeliveryError):
    """Nothing was sent: our own limits (the fleet's REST budget, a method paused until its time
    budget resets) say wait ``retry_after`` seconds. Not a failed attempt."""

    retryable = True

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = max(0.0, retry_after)


class PermanentDeliveryError(DeliveryError):
    """Trying again will fail the same way until someone changes something."""

    retryable = False


class Channel(Protocol):
    """Optional, found with ``getattr`` by workers/deliver.py:

    * ``send_many(notices) -> list[DeliveryError | None]``: several in one request (a ``batch``);
    * ``find_posted(notices) -> set[str]``: the keys of those an earlier attempt already delivered
      (looked up before sending one whose outcome is unknown);
    * ``repeat_safe = True``: sending a notice again replaces it instead of doubling it
      (a personal notification's TAG), so no lookup is needed and a send may be cut short.
    """

    name: str

    @property
    def send_seconds(self) -> float:
        """The longest one send can take: a job starts a send only when it has this much left."""
        ...

    def send(self, notice: Notice, *, deadline: float | None = None) -> None:
        """Deliver ``notice`` to ``notice.target`` or raise a ``DeliveryError`` subclass.
        ``deadline`` (``time.monotonic()``) is when the send must be over, where the channel can
        bound its own time."""
        ...
