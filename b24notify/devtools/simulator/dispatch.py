"""Answering one admitted REST request: fault rules, the operating-time limit, the method, and
``batch`` (docs/protocol.md §5).

Auth and the rate bucket are checked before this (in ``app.py``): they apply to a batch as a whole.
Inside a batch every sub-call is timed and limited as its own method, and fault rules that name a
method hit that method's sub-calls. A command's query may refer to the commands before it
(``$result[cmd][…]``, ``$next``, ``$total``, ``$time``, ``$error``): ``batchquery.py`` fills them
in as the portal's ``CRestUtil::ParseBatchQuery`` does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from b24notify.devtools.simulator.auth import Caller
from b24notify.devtools.simulator.batchquery import BatchSections, EmbeddedArray, php_truthy, substitute_references
from b24notify.devtools.simulator.bucket import OPERATING_WINDOW_SECONDS, OperatingLedger, time_info
from b24notify.devtools.simulator.calllog import SubCall
from b24notify.devtools.simulator.errors import RestError
from b24notify.devtools.simulator.faults import Fault, FaultPlan
from b24notify.devtools.simulator.methods import Answer, PortalMethods
from b24notify.devtools.simulator.params import Params
from b24notify.phpform import FormError, parse_php_query

BATCH = "batch"
BATCH_MAX_LENGTH = 50  # CRestUtil::BATCH_MAX_LENGTH


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


def _commands(raw: Any) -> list[tuple[str, Any]]:
    if isinstance(raw, dict):
        return [(str(key), command) for key, command in raw.items()]
    if isinstance(raw, list):
        return [(str(index), command) for index, command in enumerate(raw)]
    return []  # foreach over a string or nothing: no commands


def _upper_param(params: Params, name: str) -> Any:
    """``array_change_key_case($arQuery, CASE_UPPER)[name]``: of two spellings, the last wins."""
    found = None
    for key, value in params.items():
        if str(key).upper() == name:
            found = value
    return found


def _split_command(command: str) -> tuple[str, str]:
    """``parse_url($call)``'s path and query: an unencoded "#" starts a fragment, cut off."""
    method, _, query = command.partition("#")[0].partition("?")
    return method, query


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
        """``methodsBatch``: each command in turn, its query's references filled from the ones before
        (``batchquery.py``); a failed command leaves only its error (no result, no time)."""
        start, began = self._wall(), self._perf()
        halt = php_truthy(_upper_param(params, "HALT"))
        sections = BatchSections()
        sub_calls: list[SubCall] = []
        for index, (key, command) in enumerate(_commands(_upper_param(params, "CMD"))):
            if index < BATCH_MAX_LENGTH and not isinstance(command, str):
                continue  # the source skips a command that is not a string (it still counts)
            method, query = _split_command(command) if isinstance(command, str) else ("", "")
            name = self.methods.canonical(method)
            try:
                error, outcome = await self._batch_command(index, name, query, sections, caller)
            except EmbeddedArray:
                # PHP 8's str_replace throws a TypeError, which CRestServer::process does not catch:
                # the whole request fails, after the commands before this one have run.
                fatal = RestError("INTERNAL_SERVER_ERROR")
                sub_calls.append(SubCall(key, name, fatal.code))
                return Reply(fatal.status, fatal.body(), BATCH, fatal.code, sub_calls=tuple(sub_calls))
            if error is not None:
                sections.error[key] = error.body()
            elif outcome is not None and outcome.answer is not None:
                sections.result[key] = outcome.answer.result
                sections.time[key] = outcome.time
                if outcome.answer.total is not None:
                    sections.total[key] = outcome.answer.total
                if outcome.answer.next is not None:
                    sections.next[key] = outcome.answer.next
            sub_calls.append(SubCall(key, name, error.code if error else None))
            if halt and error is not None:
                break
        # Empty sections come back as [] (docs/protocol.md §5); the outer batch adds no operating time.
        body = {
            "result": {
                "result": _php_array(sections.result),
                "result_error": _php_array(sections.error),
                "result_total": _php_array(sections.total),
                "result_next": _php_array(sections.next),
                "result_time": _php_array(sections.time),
            },
            "time": time_info(start=start, finish=self._wall(), processing=self._perf() - began, operating=0,
                              operating_reset_at=int(start + OPERATING_WINDOW_SECONDS)),
        }
        return Reply(200, body, BATCH, sub_calls=tuple(sub_calls))

    async def _batch_command(
        self, index: int, name: str, query: str, sections: BatchSections, caller: Caller
    ) -> tuple[RestError | None, _Outcome | None]:
        """One command's error and outcome; raises EmbeddedArray where PHP would die."""
        # Commands past the 50th each get an error inside a 200 answer (source and batch.md, §5).
        if index >= BATCH_MAX_LENGTH:
            return RestError("ERROR_BATCH_LENGTH_EXCEEDED"), None
        try:
            # PHP parses each command's query string like a request of its own (§5).
            sub_params = parse_php_query(query)
        except FormError as exc:
            return RestError("ERROR_ARGUMENT", str(exc)), None
        sub_params = substitute_references(sub_params, sections)
        if name == BATCH:
            return RestError("ERROR_BATCH_METHOD_NOT_ALLOWED"), None
        try:
            await self._apply_fault(name, sub_params, whole_request=False)
        except RestError as error:
            return error, None
        outcome = self._run(name, sub_params, caller)
        return outcome.error, outcome
