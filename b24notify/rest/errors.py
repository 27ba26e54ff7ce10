"""Typed Bitrix24 REST errors and the one table that says what happens next for each code.

Check the table against docs/protocol.md §6–7 and the seed's "Statuses and System Error Codes".
A caller catches at the level it cares about (like httpx): ``RetryableError`` for "try again",
``TaskGone`` for "forget this task", ``PortalUnusable`` for "stop calling this portal".
"""

from __future__ import annotations

from enum import StrEnum


class Policy(StrEnum):
    RETRY_SOON = "retry_soon"  # capped exponential backoff with jitter
    RETRY_LATER = "retry_later"  # the portal asked us to slow down: reschedule, don't sleep
    REAUTH = "reauth"  # refresh the OAuth token once, then retry
    DROP_TASK = "drop_task"  # the task is gone or hidden from us: forget its state
    HALT_PORTAL = "halt_portal"  # calling again cannot help: stop and tell the operator
    REJECTED = "rejected"  # our request is wrong (a bug on our side): log its shape, no retry


class B24Error(Exception):
    """Any failure talking to a Bitrix24 portal."""

    policy: Policy = Policy.REJECTED

    def __init__(self, code: str, description: str = "", *, status: int | None = None, method: str = "") -> None:
        self.code = code
        self.description = description
        self.status = status
        self.method = method
        super().__init__(f"{method or 'request'}: {code} (HTTP {status}) {description}".strip())


class RetryableError(B24Error):
    policy = Policy.RETRY_SOON


class TransportError(RetryableError):
    """No HTTP answer: connection refused or reset, timeout, TLS failure."""


class ServerError(RetryableError):
    """The portal failed on its side (5xx, INTERNAL_SERVER_ERROR, ERROR_UNEXPECTED_ANSWER)."""


class RateLimited(RetryableError):
    """The portal asked us to slow down."""

    policy = Policy.RETRY_LATER


class QueryLimitExceeded(RateLimited):
    """The leaky bucket is full (503; 429 from older portals)."""


class BudgetSpent(RateLimited):
    """Our own fleet-wide budget says wait (no request was sent); ``wait`` seconds until one may."""

    def __init__(self, wait: float, method: str = "") -> None:
        super().__init__("BUDGET_SPENT", f"fleet REST budget spent, next request in {wait:.1f}s", method=method)
        self.wait = wait


class OperationTimeLimit(RateLimited):
    """This method's time budget is spent; ``reset_at`` (unix s) says when it drains, if known."""

    reset_at: float | None = None


class TokenExpired(B24Error):
    policy = Policy.REAUTH


class TaskGone(B24Error):
    """Error "0": access denied or no such task (docs/protocol.md §3)."""

    policy = Policy.DROP_TASK


class PortalUnusable(B24Error):
    """Credentials, plan, scope or a manual block: an operator must act."""

    policy = Policy.HALT_PORTAL


class RequestRejected(B24Error):
    """The portal refused the request itself (error "100" and other 4xx): a bug on our side."""

    policy = Policy.REJECTED


ERROR_TABLE: dict[str, type[B24Error]] = {
    # retry soon
    "INTERNAL_SERVER_ERROR": ServerError,
    "ERROR_UNEXPECTED_ANSWER": ServerError,
    # retry later, fleet-wide / per method
    "QUERY_LIMIT_EXCEEDED": QueryLimitExceeded,
    "OPERATION_TIME_LIMIT": OperationTimeLimit,
    # re-authenticate
    "expired_token": TokenExpired,
    "invalid_token": TokenExpired,  # app mode: refresh once; a refused refresh then halts the portal
    # drop the task
    "0": TaskGone,
    # stop calling the portal
    "NO_AUTH_FOUND": PortalUnusable,
    "INVALID_CREDENTIALS": PortalUnusable,
    "insufficient_scope": PortalUnusable,
    "ACCESS_DENIED": PortalUnusable,
    "INVALID_REQUEST": PortalUnusable,
    "PORTAL_DELETED": PortalUnusable,
    "user_access_error": PortalUnusable,
    "ERROR_METHOD_NOT_FOUND": PortalUnusable,
    "OVERLOAD_LIMIT": PortalUnusable,  # a manual block: retrying makes it worse
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": PortalUnusable,
    "WRONG_AUTH_TYPE": PortalUnusable,
    "invalid_grant": PortalUnusable,  # OAuth server: the refresh token is spent or revoked (reinstall)
    "invalid_client": PortalUnusable,  # OAuth server: B24_CLIENT_ID / B24_CLIENT_SECRET are wrong
    # our request is wrong
    "100": RequestRejected,
    "ERROR_BATCH_METHOD_NOT_ALLOWED": RequestRejected,
    "ERROR_BATCH_LENGTH_EXCEEDED": RequestRejected,
    "ERROR_ARGUMENT": RequestRejected,
}


def classify(code: str, description: str = "", *, status: int | None = None, method: str = "") -> B24Error:
    """Turn an ``{"error": code}`` answer into its typed exception.

    Codes not in the table fall back on the HTTP status: 5xx → ServerError, 429 → RateLimited,
    401 → PortalUnusable, anything else → RequestRejected.
    """
    cls = ERROR_TABLE.get(code)
    if cls is None:
        if status is not None and status >= 500:
            cls = ServerError
        elif status == 429:
            cls = QueryLimitExceeded
        elif status == 401:
            cls = PortalUnusable
        else:
            cls = RequestRejected
    return cls(code, description, status=status, method=method)
