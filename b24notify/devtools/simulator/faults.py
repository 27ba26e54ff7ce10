"""Fault injection: rules that make REST calls fail, hang or lose their connection on purpose.

A rule names a method (or ``"*"``), optionally a task, and what goes wrong: an error ``code``
(HTTP status from docs/protocol.md §7 unless given), a ``network`` fault (``"drop"`` the connection,
``"drop_after"`` it once the call has run, ``"delay"`` the answer by ``delay_seconds``), or an
error after a delay. It fires ``count`` times,
or with ``probability`` per matching call, or both. Draws come from one seeded ``random.Random``,
so a chaos run replays exactly for the same seed and the same calls.

``"*"`` rules apply to whole requests (a ``batch`` counts as one); rules that name a method also
apply to that method's sub-calls inside a batch.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from b24notify.devtools.simulator.errors import RestError

ANY_METHOD = "*"
NETWORK_FAULTS = ("drop", "drop_after", "delay")


class InvalidFaultRule(ValueError):
    pass


@dataclass
class FaultRule:
    method: str = ANY_METHOD
    error: str | None = None
    status: int | None = None
    description: str | None = None
    count: int | None = None  # times left; None = unlimited
    probability: float | None = None
    task_id: int | None = None
    network: str | None = None  # "drop" (before the call runs) | "drop_after" (it ran) | "delay"
    delay_seconds: float = 0.0

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FaultRule:
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidFaultRule(f"unknown fault rule keys: {', '.join(sorted(unknown))}")
        try:
            rule = cls(
                method=str(raw.get("method") or ANY_METHOD),
                error=None if raw.get("error") is None else str(raw["error"]),
                status=None if raw.get("status") is None else int(raw["status"]),
                description=None if raw.get("description") is None else str(raw["description"]),
                count=None if raw.get("count") is None else int(raw["count"]),
                probability=None if raw.get("probability") is None else float(raw["probability"]),
                task_id=None if raw.get("task_id") is None else int(raw["task_id"]),
                network=None if raw.get("network") is None else str(raw["network"]),
                delay_seconds=float(raw.get("delay_seconds") or 0.0),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidFaultRule(f"bad fault rule value: {exc}") from None
        rule._validate()
        return rule

    def _validate(self) -> None:
        if self.error is None and self.network is None:
            raise InvalidFaultRule("a fault rule needs an error code or a network fault")
        if self.network is not None and self.network not in NETWORK_FAULTS:
            raise InvalidFaultRule(f"network must be one of {', '.join(NETWORK_FAULTS)}")
        if self.network == "delay" and self.delay_seconds <= 0:
            raise InvalidFaultRule("a delay fault needs delay_seconds > 0")
        if self.count is not None and self.count < 1:
            raise InvalidFaultRule("count must be at least 1")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise InvalidFaultRule("probability must be between 0 and 1")
        if self.delay_seconds < 0:
            raise InvalidFaultRule("delay_seconds must not be negative")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, method: str, task_id: int | None, *, whole_request: bool) -> bool:
        if self.count == 0:
            return False
        if self.method == ANY_METHOD:
            if not whole_request:
                return False
        elif self.method.lower() != method.lower():
            return False
        return self.task_id is None or self.task_id == task_id


@dataclass(frozen=True)
class Fault:
    """What to do to one call."""

    delay_seconds: float = 0.0
    drop: bool = False
    drop_after: bool = False  # run the call, then lose the answer: the client cannot know it happened
    error: RestError | None = None


class FaultPlan:
    def __init__(self, seed: int | str = 0) -> None:
        self.rules: list[FaultRule] = []
        self._rng = random.Random(f"faults:{seed}")

    def reseed(self, seed: int | str) -> None:
        self._rng = random.Random(f"faults:{seed}")

    def add(self, rule: FaultRule) -> None:
        self.rules.append(rule)

    def clear(self) -> None:
        self.rules.clear()

    def pick(self, method: str, task_id: int | None = None, *, whole_request: bool = True) -> Fault | None:
        """The first rule that matches and fires, turned into a Fault (its count is spent)."""
        for rule in self.rules:
            if not rule.matches(method, task_id, whole_request=whole_request):
                continue
            if rule.probability is not None and self._rng.random() >= rule.probability:
                continue
            if rule.count is not None:
                rule.count -= 1
            return Fault(
                delay_seconds=rule.delay_seconds,
                drop=rule.network == "drop",
                drop_after=rule.network == "drop_after",
                error=None if rule.error is None else RestError(rule.error, rule.description, rule.status),
            )
        return None
