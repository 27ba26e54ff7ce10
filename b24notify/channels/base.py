"""What every delivery channel is: something that sends one alert, or says why it could not.

A channel sorts its failures into two kinds so the job can apply one policy: a retryable error
(the server is busy, down or greylisting) is tried again later; a permanent one (address
unknown, credentials wrong, message rejected) is recorded and never retried.
"""

from __future__ import annotations

from typing import Protocol

from b24notify.alerts import Alert


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


class PermanentDeliveryError(DeliveryError):
    """Trying again will fail the same way until someone changes something."""

    retryable = False


class Channel(Protocol):
    name: str

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` or raise a ``DeliveryError`` subclass."""
        ...
