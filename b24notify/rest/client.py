"""The Bitrix24 REST client: one portal, sync httpx (workers are sync).

Its surface is deliberately small — ``call``, ``call_page`` and ``batch``; the fleet-wide rate
budget (``guard``) and the way requests authenticate (``credentials``: an incoming webhook, or an
app's OAuth token that is refreshed once on ``expired_token``) slide in behind it.

Credentials only ever go to the configured webhook URL or the endpoint confirmed at app install:
nothing from an event payload (such as ``auth[client_endpoint]``) reaches this class, and
redirects are never followed.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from b24notify.phpform import encode_php_query
from b24notify.rest.credentials import Credentials, WebhookCredentials
from b24notify.rest.errors import ERROR_TABLE, B24Error, Policy, ServerError, TransportError, classify
from b24notify.rest.guard import CallGuard
from b24notify.settings import Webhook

log = logging.getLogger(__name__)

METHOD_NAME = re.compile(r"^[A-Za-z0-9_.]+$")
MAX_BATCH = 50

CallObserver = Callable[[str, str], None]  # (method, outcome: "ok", a known error code or "other")

# Outcomes become metric labels, and an error code is whatever text the portal answered: only the
# codes we know (the policy table, and the ones this package makes up) pass; anything else is
# "other" (the code itself is still in the log line and the exception).
KNOWN_OUTCOMES = frozenset({"ok", *ERROR_TABLE, "TIMEOUT", "NETWORK_ERROR", "BUDGET_SPENT", "OAUTH_LOCK_TIMEOUT",
                            "APP_NOT_INSTALLED", "MEMBER_MISMATCH"})
HTTP_STATUS_CODE = re.compile(r"^HTTP_[1-5][0-9][0-9]$")  # made here from the status: at most 500 values
OTHER_OUTCOME = "other"


def metric_outcome(code: str) -> str:
    """``code`` as a metric label value from a bounded set."""
    return code if code in KNOWN_OUTCOMES or HTTP_STATUS_CODE.match(code) else OTHER_OUTCOME


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter: sleep U(0, min(cap, base * 2**attempt))."""

    base: float = 0.5
    cap: float = 8.0
    attempts: int = 3  # calls in all, the first one included

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.cap, self.base * (2**attempt)))


@dataclass(frozen=True)
class Answer:
    result: Any
    total: int | None = None
    next: int | None = None
    time: Mapping[str, Any] = field(default_factory=dict)


class RestClient:
    def __init__(
        self,
        credentials: Credentials | Webhook,
        *,
        timeout: float = 20.0,
        backoff: Backoff | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        observer: CallObserver | None = None,
        guard: CallGuard | None = None,
    ) -> None:
        self.credentials: Credentials = (
            WebhookCredentials(credentials) if isinstance(credentials, Webhook) else credentials)
        self.guard = guard
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._observer = observer
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "b24notify", "Accept": "application/json"},
        )

    @property
    def portal(self) -> str:
        return self.credentials.portal

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: Mapping[str, Any] | None = None, *, idempotent: bool = True) -> Any:
        return self.call_page(method, params, idempotent=idempotent).result

    def call_page(self, method: str, params: Mapping[str, Any] | None = None, *,
                  idempotent: bool = True) -> Answer:
        """Call ``method``; retry transport and server errors and a full bucket with backoff.

        Other errors raise at once: the caller's policy decides (reschedule, drop, halt). A call
        that is not ``idempotent`` (posting a message) is not repeated here after a transport or
        server error: the portal may have done it, and the caller must look before it tries again.
        """
        if not METHOD_NAME.match(method):
            raise ValueError(f"not a REST method name: {method!r}")
        attempt = 0
        renewed = False
        while True:
            if self.guard is not None:
                # Raises BudgetSpent / OperationTimeLimit without a request: the caller reschedules.
                self.guard.before(method)
            url, auth = self.credentials.target(method)
            try:
                answer = self._call_once(method, url, {**(params or {}), **auth})
            except B24Error as exc:
                self._observe(method, exc.code)
                if self.guard is not None:
                    self.guard.failed(method, exc)
                if exc.policy is Policy.REAUTH and not renewed:
                    # Once per call: a token that expires again right after a refresh is not ours
                    # to fix by refreshing harder.
                    renewed = True
                    if self.credentials.renew(auth):
                        continue
                # A full bucket is retried here only without a guard; with one, the guard has pushed
                # the fleet's clock back and the caller reschedules instead of holding a worker.
                retry = (exc.policy is Policy.RETRY_SOON and idempotent) or (
                    exc.code == "QUERY_LIMIT_EXCEEDED" and self.guard is None)
                attempt += 1
                if not retry or attempt >= self.backoff.attempts:
                    raise
                delay = self.backoff.delay(attempt, self._rng)
                log.warning("event=rest.retry method=%s code=%s attempt=%d delay=%.2f",
                            method, exc.code, attempt, delay)
                self._sleep(delay)
                continue
            self._observe(method, "ok")
            if self.guard is not None:
                self.guard.after(method, answer.time)
            return answer

    def batch(self, calls: Mapping[str, tuple[str, Mapping[str, Any]]], *,
              idempotent: bool = True) -> dict[str, Answer | B24Error]:
        """Run up to 50 calls as one request (one unit of the portal's rate budget).

        Keys must not be numeric: the portal's PHP would turn a map with numeric keys into a list.
        Each call gets its own Answer or typed error, so one bad task never fails the others.
        Portal-level errors (auth, rate limit) fail the whole batch and raise as usual.
        """
        if not calls:
            return {}
        if len(calls) > MAX_BATCH:
            raise ValueError(f"a batch carries at most {MAX_BATCH} calls")
        for key, (method, _) in calls.items():
            if key.isdigit() or not METHOD_NAME.match(key) or not METHOD_NAME.match(method):
                raise ValueError(f"bad batch key or method: {key!r} {method!r}")
        if self.guard is not None:
            for method in {m for m, _ in calls.values()}:
                self.guard.admit(method)
        cmd = {key: f"{method}?{encode_php_query(params)}" for key, (method, params) in calls.items()}
        body = self.call("batch", {"halt": 0, "cmd": cmd}, idempotent=idempotent)
        answers = parse_batch(calls, body)
        for key, answer in answers.items():
            method = calls[key][0]
            if isinstance(answer, Answer):
                self._observe(method, "ok")
                if self.guard is not None:
                    self.guard.after(method, answer.time)
            else:
                self._observe(method, answer.code)
                if self.guard is not None:
                    self.guard.failed(method, answer)
        return answers

    def _observe(self, method: str, outcome: str) -> None:
        # ``method`` is always ours (a literal at the call site, checked against METHOD_NAME).
        if self._observer is not None:
            self._observer(method, metric_outcome(outcome))

    def _call_once(self, method: str, url: str, params: Mapping[str, Any]) -> Answer:
        try:
            response = self._http.post(url, json=params)
        except httpx.TimeoutException as exc:
            raise TransportError("TIMEOUT", type(exc).__name__, method=method) from None
        except httpx.TransportError as exc:
            raise TransportError("NETWORK_ERROR", type(exc).__name__, method=method) from None
        return parse_answer(method, response.status_code, response.content)


def parse_answer(method: str, status: int, body: bytes) -> Answer:
    """Turn one HTTP answer into an Answer or the typed error it carries."""
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        if status >= 500 or status == 200:
            raise ServerError("ERROR_UNEXPECTED_ANSWER", f"non-JSON answer, HTTP {status}", status=status,
                              method=method)
        raise classify(f"HTTP_{status}", "non-JSON answer", status=status, method=method)
    if "error" in payload:
        raise classify(str(payload["error"]), str(payload.get("error_description") or ""), status=status,
                       method=method)
    if status >= 400:
        raise classify(f"HTTP_{status}", "error status without an error code", status=status, method=method)
    if "result" not in payload:
        raise ServerError("ERROR_UNEXPECTED_ANSWER", "answer without result", status=status, method=method)
    time_info = payload.get("time")
    return Answer(
        result=payload["result"],
        total=_optional_int(payload.get("total")),
        next=_optional_int(payload.get("next")),
        time=time_info if isinstance(time_info, dict) else {},
    )


def _section(body: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    # Empty sections come back as [] instead of {} (PHP arrays, docs/protocol.md §5).
    section = body.get(name)
    return section if isinstance(section, Mapping) else {}


def parse_batch(calls: Mapping[str, tuple[str, Mapping[str, Any]]], body: Any) -> dict[str, Answer | B24Error]:
    if not isinstance(body, Mapping):
        body = {}
    results, errors = _section(body, "result"), _section(body, "result_error")
    totals, nexts, times = _section(body, "result_total"), _section(body, "result_next"), _section(body, "result_time")
    answers: dict[str, Answer | B24Error] = {}
    for key, (method, _) in calls.items():
        error = errors.get(key)
        if isinstance(error, Mapping):
            answers[key] = classify(str(error.get("error", "")), str(error.get("error_description") or ""),
                                    method=method)
        elif key in results:
            time_info = times.get(key)
            answers[key] = Answer(results[key], _optional_int(totals.get(key)), _optional_int(nexts.get(key)),
                                  time_info if isinstance(time_info, dict) else {})
        else:
            answers[key] = ServerError("ERROR_UNEXPECTED_ANSWER", "call missing from the batch answer",
                                       method=method)
    return answers


def _optional_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
