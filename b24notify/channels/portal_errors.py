"""How a failed Bitrix24 notification call (``im.message.add``, ``im.notify.system.add``) is sorted:
a wait for our own limits, a passing fault, trouble someone must fix, or a refusal for good."""

from __future__ import annotations

import time
from collections.abc import Collection

from b24notify.channels.base import DeliveryDeferred, DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from b24notify.rest.errors import (
    B24Error,
    BudgetSpent,
    OperationTimeLimit,
    Policy,
    QueryLimitExceeded,
    ServerError,
    TransportError,
)

# One request's worst case at the default settings: the REST timeout (B24NOTIFY_REST_TIMEOUT_SECONDS,
# 20 s) plus the longest the fleet's budget makes a caller sleep before it says BUDGET_SPENT (5 s).
DEFAULT_SEND_SECONDS = 25.0


def classify_portal_error(exc: B24Error, method: str, permanent: Collection[str], *,
                          whole_request: bool = False) -> DeliveryError:
    """``permanent``: the method's own error codes that no retry can fix (docs/protocol.md §9).
    ``whole_request``: the error ended the request itself (not one call of a batch), so a
    transport or server failure leaves unknown whether the portal did it."""
    reason = f"{method} {exc.code}: {exc.description}"[:300]
    wait = known_wait(exc)
    if wait is not None:
        return DeliveryDeferred(reason, wait)
    if exc.code in permanent or exc.policy is Policy.REJECTED:
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
