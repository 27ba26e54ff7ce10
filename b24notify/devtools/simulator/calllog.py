"""Every REST call the simulator answered, for tests and operators (``GET /_sim/calls``).

A record says how the call was authorised (``"webhook"`` or ``"oauth"``) and as whom, never with
what: access tokens are taken out of the params before they get here (``auth.without_auth``).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_CALLS = 10_000  # oldest calls fall off; the counters keep counting


@dataclass(frozen=True)
class SubCall:
    key: str
    method: str
    error: str | None


@dataclass(frozen=True)
class CallRecord:
    seq: int
    at: float
    method: str
    params: Mapping[str, Any]
    http_status: int | None  # None: the connection was dropped on purpose
    error: str | None
    sub_calls: tuple[SubCall, ...] = ()
    auth: str = "webhook"  # "webhook" | "oauth": which door the call came through
    user_id: int | None = None  # whom it acted as; None when it was refused before that was known

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "seq": self.seq, "at": self.at, "method": self.method, "params": self.params,
            "http_status": self.http_status, "error": self.error,
            "dropped": self.http_status is None, "auth": self.auth, "user_id": self.user_id,
        }
        if self.sub_calls:
            record["sub_calls"] = [{"key": s.key, "method": s.method, "error": s.error} for s in self.sub_calls]
        return record


class CallLog:
    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._seq = itertools.count(1)
        self.calls: deque[CallRecord] = deque(maxlen=MAX_CALLS)
        self.by_method: Counter[str] = Counter()  # batch sub-calls count under their own method
        self.by_status: Counter[str] = Counter()  # HTTP statuses of whole requests; "dropped"
        self.by_error: Counter[str] = Counter()  # error codes, sub-calls' included

    def record(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        http_status: int | None,
        error: str | None = None,
        sub_calls: tuple[SubCall, ...] = (),
        auth: str = "webhook",
        user_id: int | None = None,
    ) -> None:
        self.calls.append(CallRecord(next(self._seq), self._wall(), method, params, http_status, error, sub_calls,
                                     auth, user_id))
        self.by_method[method] += 1
        self.by_status["dropped" if http_status is None else str(http_status)] += 1
        if error:
            self.by_error[error] += 1
        for sub in sub_calls:
            self.by_method[sub.method] += 1
            if sub.error:
                self.by_error[sub.error] += 1

    def to_json(self, method: str | None = None) -> dict[str, Any]:
        calls = [c for c in self.calls if method is None or c.method == method
                 or any(s.method == method for s in c.sub_calls)]
        return {
            "calls": [c.to_json() for c in calls],
            "counts": {
                "by_method": dict(self.by_method),
                "by_status": dict(self.by_status),
                "by_error": dict(self.by_error),
            },
        }
