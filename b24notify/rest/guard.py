"""What happens around every REST call to one portal, for the whole fleet: the shared rate budget
and the per-method time budget. The client calls ``before``/``after``/``failed``; tests and tools
that need no limits pass no guard.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from b24notify.rest.budget import RateBudget
from b24notify.rest.errors import B24Error, OperationTimeLimit, QueryLimitExceeded
from b24notify.rest.operating import OperatingBudget

# How far a 503 from the portal pushes the fleet's clock: the bucket drains 2/s, so this frees
# ten requests' worth of room for whoever else filled it.
QUERY_LIMIT_PENALTY_SECONDS = 5.0


class CallGuard(Protocol):
    def admit(self, method: str) -> None: ...

    def before(self, method: str) -> None: ...

    def after(self, method: str, time_info: Mapping[str, Any]) -> None: ...

    def failed(self, method: str, error: B24Error) -> None: ...


class PortalGuard:
    def __init__(self, rate: RateBudget, operating: OperatingBudget) -> None:
        self.rate = rate
        self.operating = operating

    def admit(self, method: str) -> None:
        """May ``method`` run now (a batch sub-call: no rate budget of its own)?"""
        self.operating.check(method)

    def before(self, method: str) -> None:
        self.operating.check(method)
        self.rate.take()

    def after(self, method: str, time_info: Mapping[str, Any]) -> None:
        self.operating.observe(method, time_info)

    def failed(self, method: str, error: B24Error) -> None:
        if isinstance(error, QueryLimitExceeded) and error.code == "QUERY_LIMIT_EXCEEDED":
            self.rate.penalize(QUERY_LIMIT_PENALTY_SECONDS)
        elif isinstance(error, OperationTimeLimit):  # the portal's 429, or a batch sub-call's
            error.reset_at = self.operating.pause(method)
