"""Answering one admitted REST request: fault rules, the operating-time limit, the method, and
``batch`` (PROTOCOL.md §5).

Auth and the rate bucket are checked before this (in ``app.py``): they apply to a batch as a whole.
Inside a batch every sub-call is timed and limited as its own method, and fault rules that name a
method hit that method's sub-calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from b24notify.phpform import FormError, parse_php_query
from b24notify.simulator.auth import Caller
from b24notify.simulator.bucket import OPERATING_WINDOW_SECONDS, OperatingLedger, time_info
from b24notify.simulator.calllog import SubCall
from b24notify.simulator.errors import RestError
from b24notify.simulator.faults import Fault, FaultPlan
from b24notify.simulator.methods import Answer, PortalMethods
from b24notify.simulator.params import Params, flag, param

BATCH = "batch"
BATCH_MAX_LENGTH = 50  # CRestUtil::BATCH_MAX_LENGTH
_SECTIONS = ("result", "result_error", "result_total", "result_next", "result_time")


class ConnectionDropped(Exception):
    """A fault rule wants the connection cut without an answer."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    method: str  # the documented spelling, for the call log
    error: str | None = None
    sub_calls: tuple[SubCall, ...] = ()

    @classmethod
    def failure(cls, method: str, error: RestError) -> Reply:
        return cls(error.status, error.body(), method, error.code)


@dataclass(frozen=True)
class _Outcome:
    answer: Answer | None
    error: RestError | None
    time: dict[str, Any]


def _php_array(section: dict[str, Any]) -> Any:
    """``json_encode`` of a PHP array: ``[]`` when empty, a list when keyed 0..n-1, else an object."""
    if list(section) == [str(i) for i in range(len(section))]:
        return list(section.values())
    return section


def _commands(raw: Any) -> list[tuple[str, str]]:
    if isinstance(raw, dict):
        return [(str(key), str(command)) for key, command in raw.items()]
    if isinstance(raw, list):
        return [(str(index), str(command)) for index, command in enumerate(raw)]
    return []


class Dispatcher:
    def __init__(
        self,
        methods: PortalMethods,
        faults: FaultPlan,
        ledger: OperatingLedger,
        *,
        wall: Callable[[], float] = time.time,
        perf: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.methods = methods
        self.faults = faults
        self.ledger = ledger
        self._wall = wall
        self._perf = perf

    async def handle(self, method: str, params: Params, caller: Caller) -> Reply:
        """Raises ConnectionDropped when a fault says so; every other outcome is a Reply. A batch's
        commands all run as ``caller``."""
        name = self.methods.canonical(method)
        try:
            fault = await self._apply_fault(name, params, whole_request=True)
        except RestError as error:
            return Reply.failure(name, error)
        if name == BATCH:
            reply = await self._batch(params, caller)
            if fault is not None and fault.drop_after:
                raise ConnectionDropped(name)
            return reply
        outcome = self._run(name, params, caller)
        if fault is not None and fault.drop_after:
            raise ConnectionDropped(name)
        if outcome.error is not None:
            return Reply.failure(name, outcome.error)
        assert outcome.answer is not None
        body: dict[str, Any] = {"result": outcome.answer.result}
        if outcome.answer.total is not None:
            body["total"] = outcome.answer.total
        if outcome.answer.next is not None:
            body["next"] = outcome.answer.next
        body["time"] = outcome.time
        return Reply(200, body, name)

    async def _apply_fault(self, name: str, params: Params, *, whole_request: bool) -> Fault | None:
        """Delay, drop or fail before the call; returns the fault so a ``drop_after`` can act after."""
        fault = self.faults.pick(name, self.methods.task_id_of(params), whole_request=whole_request)
        if fault is None:
            return None
        if fault.delay_seconds > 0:
            await asyncio.sleep(fault.delay_seconds)
        if fault.drop:
            raise ConnectionDropped(name)
        if fault.error is not None:
            raise fault.error
        return fault

    def _run(self, name: str, params: Params, caller: Caller) -> _Outcome:
        start, began = self._wall(), self._perf()
        answer: Answer | None = None
        error: RestError | None = None
        if self.ledger.is_blocked(name):
            error = RestError("OPERATION_TIME_LIMIT")
        else:
            try:
                answer = self.methods.call(name, params, caller)
            except RestError as exc:
                error = exc
            self.ledger.charge(name, self._perf() - began)
        processing = self._perf() - began
        timing = time_info(start=start, finish=self._wall(), processing=processing,
                           operating=self.ledger.operating(name), operating_reset_at=self.ledger.reset_at(name))
        return _Outcome(answer, error, timing)

    async def _batch(self, params: Params, caller: Caller) -> Reply:
        start, began = self._wall(), self._perf()
        halt = flag(param(params, "halt"))
        sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        sub_calls: list[SubCall] = []
        for index, (key, command) in enumerate(_commands(param(params, "cmd"))):
            method, _, query = command.partition("?")
            name = self.methods.canonical(method)
            error, outcome = await self._batch_command(index, name, query, caller)
            if outcome is not None:
                sections["result_time"][key] = outcome.time
            if error is not None:
                sections["result_error"][key] = error.body()
            elif outcome is not None and outcome.answer is not None:
                sections["result"][key] = outcome.answer.result
                if outcome.answer.total is not None:
                    sections["result_total"][key] = outcome.answer.total
                if outcome.answer.next is not None:
                    sections["result_next"][key] = outcome.answer.next
            sub_calls.append(SubCall(key, name, error.code if error else None))
            if halt and error is not None:
                break
        # Empty sections come back as [] (PROTOCOL.md §5); the outer batch adds no operating time.
        body = {
            "result": {name: _php_array(section) for name, section in sections.items()},
            "time": time_info(start=start, finish=self._wall(), processing=self._perf() - began, operating=0,
                              operating_reset_at=int(start + OPERATING_WINDOW_SECONDS)),
        }
        return Reply(200, body, BATCH, sub_calls=tuple(sub_calls))

    async def _batch_command(
        self, index: int, name: str, query: str, caller: Caller
    ) -> tuple[RestError | None, _Outcome | None]:
        # Commands past the 50th each get an error inside a 200 answer (source and batch.md, §5).
        if index >= BATCH_MAX_LENGTH:
            return RestError("ERROR_BATCH_LENGTH_EXCEEDED"), None
        if name == BATCH:
            return RestError("ERROR_BATCH_METHOD_NOT_ALLOWED"), None
        try:
            # PHP parses each command's query string like a request of its own (§5).
            sub_params = parse_php_query(query)
        except FormError as exc:
            return RestError("ERROR_ARGUMENT", str(exc)), None
        try:
            await self._apply_fault(name, sub_params, whole_request=False)
        except RestError as error:
            return error, None
        outcome = self._run(name, sub_params, caller)
        return outcome.error, outcome
