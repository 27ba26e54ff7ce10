"""REST errors the simulated portal answers with, and the table of standard codes (docs/protocol.md §7).

An error is ``{"error": code, "error_description": text}`` with an HTTP status. Codes are strings and
may be digits (``"0"``, ``"100"``): the tasks controllers speak the old v2 dialect.
"""

from __future__ import annotations

from typing import Any

# code -> (HTTP status, description). Descriptions are close to the portal's own wording where the
# docs quote it; nobody should parse them.
STANDARD_ERRORS: dict[str, tuple[int, str]] = {
    "INTERNAL_SERVER_ERROR": (500, "Internal server error"),
    "ERROR_UNEXPECTED_ANSWER": (500, "Server returned an unexpected response"),
    "QUERY_LIMIT_EXCEEDED": (503, "Too many requests"),
    "OPERATION_TIME_LIMIT": (429, "Method is blocked due to operation time limit."),
    "NO_AUTH_FOUND": (401, "Wrong authorization data"),
    "expired_token": (401, "The access token provided has expired."),
    "invalid_token": (401, "The access token provided is invalid."),
    "WRONG_AUTH_TYPE": (401, "Current authorization type is denied for this method"),
    "INVALID_CREDENTIALS": (403, "Invalid request credentials"),
    "insufficient_scope": (403, "The request requires higher privileges than provided by the webhook token"),
    "ACCESS_DENIED": (403, "REST API is available only on commercial plans"),
    "OVERLOAD_LIMIT": (503, "REST API is blocked due to overload"),
    # The docs say 500, the BIZ rest.php source throws it with 403 (docs/protocol.md §7, open question 6).
    "PORTAL_DELETED": (403, "Portal was deleted"),
    "user_access_error": (403, "The user does not have access to the application."),
    "ERROR_METHOD_NOT_FOUND": (404, "Method not found!"),
    "INVALID_REQUEST": (400, "Https required."),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (405, "Method is not allowed for batch usage"),
    "ERROR_BATCH_LENGTH_EXCEEDED": (400, "Max batch length exceeded"),
    "ERROR_ARGUMENT": (400, "Invalid argument"),
    "ERROR_CORE": (400, "Internal error"),
    "ERROR_EVENT_NOT_FOUND": (400, "Event not found"),
    "0": (400, "Access denied."),
    "100": (400, "Invalid value to match with parameter. Should be value of type int."),
}

# RestException::getStatus() answers 400 when no status was set.
DEFAULT_STATUS = 400


class RestError(Exception):
    """One error answer of the portal."""

    def __init__(self, code: str, description: str | None = None, status: int | None = None) -> None:
        known_status, known_description = STANDARD_ERRORS.get(code, (DEFAULT_STATUS, code))
        self.code = code
        self.description = known_description if description is None else description
        self.status = known_status if status is None else status
        super().__init__(f"{self.code} (HTTP {self.status}): {self.description}")

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.description}
