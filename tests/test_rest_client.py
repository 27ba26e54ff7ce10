"""The REST client against a real HTTP server on loopback that answers what each test scripts."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from b24notify.rest import (
    Backoff,
    OperationTimeLimit,
    Policy,
    PortalUnusable,
    QueryLimitExceeded,
    RequestRejected,
    RestClient,
    ServerError,
    TaskGone,
    TokenExpired,
    TransportError,
    classify,
)
from b24notify.settings import parse_webhook_url
from tests.support.servers import ThreadedServer


class ScriptedPortal:
    def __init__(self) -> None:
        self.replies: list[tuple[int, bytes]] = []
        self.requests: list[tuple[str, dict]] = []

    def reply(self, status: int, body: object) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.replies.append((status, raw))

    async def endpoint(self, request: Request) -> Response:
        self.requests.append((request.url.path, json.loads(await request.body() or b"{}")))
        status, body = self.replies.pop(0) if self.replies else (200, b'{"result": null}')
        return Response(body, status_code=status, media_type="application/json")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.endpoint, methods=["POST", "GET"])])


@pytest.fixture
def portal() -> Iterator[tuple[ScriptedPortal, str]]:
    scripted = ScriptedPortal()
    with ThreadedServer(scripted.app()) as server:
        yield scripted, server.url


def client_for(url: str, sleeps: list[float] | None = None, attempts: int = 3) -> RestClient:
    recorded = sleeps if sleeps is not None else []
    return RestClient(parse_webhook_url(f"{url}/rest/1/secretcode/"), timeout=2,
                      backoff=Backoff(base=0.01, cap=0.05, attempts=attempts),
                      sleep=recorded.append, rng=random.Random(1))


def test_call_posts_json_to_the_webhook_method_and_returns_result(portal):
    scripted, url = portal
    scripted.reply(200, {"result": [{"id": 1}], "time": {"operating": 0}})
    with client_for(url) as client:
        assert client.call("tasks.task.result.list", {"taskId": 8017}) == [{"id": 1}]
    assert scripted.requests == [("/rest/1/secretcode/tasks.task.result.list", {"taskId": 8017})]


def test_server_errors_are_retried_with_backoff_then_succeed(portal):
    scripted, url = portal
    scripted.reply(500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "x"})
    scripted.reply(503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
    scripted.reply(200, {"result": 5})
    sleeps: list[float] = []
    with client_for(url, sleeps) as client:
        assert client.call("im.message.add", {}) == 5
    assert len(sleeps) == 2 and all(0 <= s <= 0.05 for s in sleeps)


def test_retries_stop_after_the_attempt_budget(portal):
    scripted, url = portal
    for _ in range(3):
        scripted.reply(502, b"<html>bad gateway</html>")
    with client_for(url) as client, pytest.raises(ServerError) as info:
        client.call("tasks.task.get", {"taskId": 1})
    assert info.value.code == "ERROR_UNEXPECTED_ANSWER"
    assert len(scripted.requests) == 3


@pytest.mark.parametrize(
    ("status", "code", "expected", "policy"),
    [
        (400, "0", TaskGone, Policy.DROP_TASK),
        (400, "100", RequestRejected, Policy.REJECTED),
        (401, "NO_AUTH_FOUND", PortalUnusable, Policy.HALT_PORTAL),
        (401, "expired_token", TokenExpired, Policy.REAUTH),
        (403, "insufficient_scope", PortalUnusable, Policy.HALT_PORTAL),
        (503, "OVERLOAD_LIMIT", PortalUnusable, Policy.HALT_PORTAL),
        (429, "OPERATION_TIME_LIMIT", OperationTimeLimit, Policy.RETRY_LATER),
        (404, "ERROR_METHOD_NOT_FOUND", PortalUnusable, Policy.HALT_PORTAL),
    ],
)
def test_non_retryable_errors_raise_their_type_at_once(portal, status, code, expected, policy):
    scripted, url = portal
    scripted.reply(status, {"error": code, "error_description": "d"})
    with client_for(url) as client, pytest.raises(expected) as info:
        client.call("tasks.task.result.list", {"taskId": 1})
    assert info.value.policy is policy and info.value.status == status
    assert len(scripted.requests) == 1


def test_connection_refused_is_a_transport_error_after_retries():
    with client_for("http://127.0.0.1:9") as client, pytest.raises(TransportError):
        client.call("tasks.task.get", {"taskId": 1})


def test_secret_code_never_appears_in_error_messages(portal):
    scripted, url = portal
    scripted.reply(401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"})
    with client_for(url) as client, pytest.raises(PortalUnusable) as info:
        client.call("tasks.task.get", {"taskId": 1})
    assert "secretcode" not in str(info.value)


def test_method_names_cannot_escape_the_webhook_path(portal):
    _, url = portal
    with client_for(url) as client, pytest.raises(ValueError):
        client.call("../../evil", {})


def test_unknown_codes_fall_back_on_status():
    assert isinstance(classify("WHATEVER", status=502), ServerError)
    assert isinstance(classify("WHATEVER", status=429), QueryLimitExceeded)
    assert isinstance(classify("WHATEVER", status=400), RequestRejected)


def test_error_codes_from_the_portal_become_bounded_metric_labels(portal, redis, keys):
    """A portal (or anything answering in its place) names the error code: only codes from the
    policy table reach /metrics as labels; the rest are counted as "other"."""
    from b24notify.metrics import Counters, decode_counters, render

    scripted, url = portal
    counters = Counters(redis, keys)
    client = RestClient(parse_webhook_url(f"{url}/rest/1/secretcode/"), timeout=2, sleep=lambda s: None,
                        observer=lambda method, outcome: counters.inc("b24notify_rest_calls", method=method,
                                                                      outcome=outcome))
    for n in range(20):
        scripted.reply(400, {"error": f"MADE_UP_{n}", "error_description": "x"})
        with pytest.raises(RequestRejected):
            client.call("user.get")
    scripted.reply(400, {"error": "0", "error_description": "Access denied."})
    with pytest.raises(TaskGone):
        client.call("tasks.task.result.list", {"taskId": 1})
    scripted.reply(418, b"teapot")
    with pytest.raises(RequestRejected):
        client.call("user.get")
    scripted.reply(200, {"result": {"result": {"a": []}, "result_error": {
        "b": {"error": "ANOTHER_ONE", "error_description": "x"}, "c": {"error": "0", "error_description": ""}}}})
    client.batch({key: ("tasks.task.result.list", {"taskId": 1}) for key in "abc"})
    client.close()
    text = render(decode_counters(redis.hgetall(keys.metrics())), {}).decode()
    assert "MADE_UP" not in text and "ANOTHER_ONE" not in text
    assert 'b24notify_rest_calls_total{method="user.get",outcome="other"} 20.0' in text
    assert 'b24notify_rest_calls_total{method="user.get",outcome="HTTP_418"} 1.0' in text
    assert 'b24notify_rest_calls_total{method="tasks.task.result.list",outcome="0"} 2.0' in text
    assert 'b24notify_rest_calls_total{method="tasks.task.result.list",outcome="other"} 1.0' in text
    assert 'b24notify_rest_calls_total{method="batch",outcome="ok"} 1.0' in text
