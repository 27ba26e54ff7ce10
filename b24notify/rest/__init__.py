"""Talking to a Bitrix24 portal: the client and its typed errors."""

from b24notify.rest.client import Answer, Backoff, RestClient
from b24notify.rest.errors import (
    B24Error,
    OperationTimeLimit,
    Policy,
    PortalUnusable,
    QueryLimitExceeded,
    RateLimited,
    RequestRejected,
    RetryableError,
    ServerError,
    TaskGone,
    TokenExpired,
    TransportError,
    classify,
)

__all__ = [
    "Answer", "B24Error", "Backoff", "OperationTimeLimit", "Policy", "PortalUnusable",
    "QueryLimitExceeded", "RateLimited", "RequestRejected", "RestClient", "RetryableError",
    "ServerError", "TaskGone", "TokenExpired", "TransportError", "classify",
]
