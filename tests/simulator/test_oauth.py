"""OAuth application mode: the token endpoint, token checks on REST calls, and portals sharing one
authority (docs/protocol.md §8)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from b24notify.devtools.simulator import OAuthAuthority, RunningSimulator, SimulatorConfig, TokenRejected

from .conftest import EventReceiver, Rest, SimulatorFactory

PORTAL_B = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
TOKEN_KEYS = ["access_token", "refresh_token", "expires", "expires_in", "client_endpoint", "server_endpoint",
              "domain", "member_id", "scope", "status", "user_id"]


def _install(sim: RunningSimulator, receiver: EventReceiver, user_id: int = 1) -> dict[str, str]:
    """Install the app with ``receiver`` as its handler; the ``auth[...]`` of the ONAPPINSTALL it got."""
    before = len(receiver.named("ONAPPINSTALL"))
    answer = sim.control.install_app(handler_url=receiver.url, user_id=user_id)
    assert answer["delivered"] is True
    event = receiver.named("ONAPPINSTALL")[before]
    return {key[5:-1]: value for key, value in event.pairs if key.startswith("auth[")}


def _call(
    sim: RunningSimulator, method: str, token: str | None, params: dict[str, Any] | None = None
) -> httpx.Response:
    body = dict(params or {})
    if token is not None:
        body["auth"] = token
    return httpx.post(f"{sim.client_endpoint}{method}", json=body, timeout=10)


def _refresh(sim: RunningSimulator, refresh_token: str, **overrides: str) -> httpx.Response:
    query = {"grant_type": "refresh_token", "client_id": "app.sim.1", "client_secret": "sim-app-secret",
             "refresh_token": refresh_token, **overrides}
    return httpx.get(sim.oauth_url, params=query, timeout=10)


@pytest.fixture
def shared() -> Iterator[tuple[RunningSimulator, RunningSimulator]]:
    """Two portals of one app: two simulators, one authority."""
    authority = OAuthAuthority()
    with RunningSimulator(SimulatorConfig(), authority) as a, \
            RunningSimulator(SimulatorConfig(member_id=PORTAL_B), authority) as b:
        yield a, b


def test_refresh_rotates_both_tokens_and_leaves_the_old_access_token_working(
    sim: RunningSimulator, receiver: EventReceiver
) -> None:
    auth = _install(sim, receiver)
    answer = _refresh(sim, auth["refresh_token"])

    assert answer.status_code == 200
    fresh = answer.json()
    assert list(fresh) == TOKEN_KEYS
    assert fresh["access_token"] != auth["access_token"] and fresh["refresh_token"] != auth["refresh_token"]
    assert (fresh["client_endpoint"], fresh["server_endpoint"], fresh["domain"]) == (
        sim.client_endpoint, "https://oauth.bitrix.info/rest/", "oauth.bitrix.info")
    assert (fresh["member_id"], fresh["scope"], fresh["status"], fresh["user_id"]) == (
        sim.config.member_id, "task,im,user", "L", 1)
    assert fresh["expires_in"] == 3600 and isinstance(fresh["expires"], int)
    assert _call(sim, "user.get", fresh["access_token"], {"ID": 503}).status_code == 200
    assert _call(sim, "user.get", auth["access_token"], {"ID": 503}).status_code == 200


def test_a_refresh_token_works_once(sim: RunningSimulator, receiver: EventReceiver) -> None:
    auth = _install(sim, receiver)
    assert _refresh(sim, auth["refresh_token"]).status_code == 200
    again = _refresh(sim, auth["refresh_token"])

    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    stats = sim.control.oauth_stats()
    assert (stats["refreshes"], stats["invalid_grants"]) == (1, 1)
    assert [(r["grant_type"], r["outcome"], r["member_id"]) for r in stats["requests"]] == [
        ("refresh_token", "ok", sim.config.member_id), ("refresh_token", "invalid_grant", None)]


def test_bad_token_requests(sim: RunningSimulator, receiver: EventReceiver) -> None:
    auth = _install(sim, receiver)
    wrong_secret = _refresh(sim, auth["refresh_token"], client_secret="guess")
    wrong_client = _refresh(sim, auth["refresh_token"], client_id="app.other")
    missing = httpx.get(sim.oauth_url, params={"grant_type": "refresh_token", "client_id": "app.sim.1"})
    code_grant = _refresh(sim, auth["refresh_token"], grant_type="authorization_code")

    assert [(r.status_code, r.json()["error"]) for r in (wrong_secret, wrong_client, missing, code_grant)] == [
        (400, "invalid_client"), (400, "invalid_client"), (400, "invalid_request"), (400, "invalid_request")]
    assert set(missing.json()) == {"error", "error_description"}
    # A refused client did not spend the refresh token; a form POST works like the GET.
    form = {"grant_type": "refresh_token", "client_id": "app.sim.1", "client_secret": "sim-app-secret",
            "refresh_token": auth["refresh_token"]}
    posted = httpx.post(sim.oauth_url, data=form)
    assert posted.status_code == 200 and posted.json()["member_id"] == sim.config.member_id


def test_an_expired_access_token_is_refused_until_refreshed(sim: RunningSimulator, receiver: EventReceiver) -> None:
    auth = _install(sim, receiver)
    sim.control.expire_tokens()

    expired = _call(sim, "user.get", auth["access_token"])
    assert (expired.status_code, expired.json()) == (
        401, {"error": "expired_token", "error_description": "The access token provided has expired."})
    fresh = _refresh(sim, auth["refresh_token"]).json()
    assert _call(sim, "user.get", fresh["access_token"]).status_code == 200


def test_access_tokens_expire_after_their_ttl() -> None:
    now = [1000.0]
    authority = OAuthAuthority(access_ttl_seconds=60, clock=lambda: now[0])
    pair = authority.issue("m1", "portal.test", "http://portal.test/rest/", 7)
    assert authority.check(pair["access_token"]).user_id == 7
    assert pair["expires"] == 1060
    now[0] = 1060.0
    with pytest.raises(TokenRejected) as rejected:
        authority.check(pair["access_token"])
    assert rejected.value.code == "expired_token"


def test_missing_and_unknown_tokens(sim: RunningSimulator) -> None:
    missing = _call(sim, "user.get", None)
    unknown = httpx.get(f"{sim.client_endpoint}user.get.json", params={"auth": "not-a-token"})
    assert (missing.status_code, missing.json()["error"]) == (401, "NO_AUTH_FOUND")
    assert (unknown.status_code, unknown.json()) == (
        401, {"error": "invalid_token", "error_description": "The access token provided is invalid."})


def test_a_token_of_portal_a_is_refused_by_portal_b(
    shared: tuple[RunningSimulator, RunningSimulator], receiver: EventReceiver
) -> None:
    a, b = shared
    auth_a = _install(a, receiver)
    b.control.install_app()

    refused = _call(b, "user.get", auth_a["access_token"])
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_token")
    assert _call(a, "user.get", auth_a["access_token"]).status_code == 200
    # One token service: A's refresh token can be refreshed at B's endpoint, and still only works on A.
    fresh = _refresh(b, auth_a["refresh_token"]).json()
    assert fresh["member_id"] == a.config.member_id and fresh["client_endpoint"] == a.client_endpoint
    assert _call(a, "user.get", fresh["access_token"]).status_code == 200
    assert _call(b, "user.get", fresh["access_token"]).status_code == 401
    assert a.control.oauth_stats()["refreshes"] == b.control.oauth_stats()["refreshes"] == 1


def test_two_portals_of_one_authority_need_their_own_member_id() -> None:
    authority = OAuthAuthority()
    with RunningSimulator(SimulatorConfig(), authority) as a, RunningSimulator(SimulatorConfig(), authority) as b:
        a.control.install_app()
        with pytest.raises(httpx.HTTPStatusError) as refused:
            b.control.install_app()
        assert refused.value.response.status_code == 409
        assert "member_id" in refused.value.response.json()["error"]


def test_oauth_calls_act_as_the_tokens_user(sim: RunningSimulator, receiver: EventReceiver) -> None:
    auth = _install(sim, receiver, user_id=503)
    created = _call(sim, "tasks.task.add", auth["access_token"], {"fields": {"TITLE": "Via the app"}})
    assert created.json()["result"]["task"]["createdBy"] == "503"

    [call] = sim.control.calls("tasks.task.add")["calls"]
    assert (call["auth"], call["user_id"], call["http_status"]) == ("oauth", 503, 200)
    assert "auth" not in call["params"]


def test_oauth_calls_share_the_bucket_and_the_faults_of_webhook_calls(
    start_simulator: SimulatorFactory, receiver: EventReceiver
) -> None:
    sim = start_simulator(bucket_capacity=3, bucket_drain_per_second=0.001)
    auth = _install(sim, receiver)
    sim.control.add_faults({"method": "user.get", "error": "expired_token", "count": 1})

    faulted = _call(sim, "user.get", auth["access_token"])
    assert (faulted.status_code, faulted.json()["error"]) == (401, "expired_token")
    assert _call(sim, "user.get", auth["access_token"]).status_code == 200
    with Rest(sim.webhook_url) as rest:
        assert rest.post("user.get").status_code == 200
    limited = _call(sim, "user.get", auth["access_token"])
    assert (limited.status_code, limited.json()["error"]) == (503, "QUERY_LIMIT_EXCEEDED")


def test_a_batch_runs_its_commands_with_its_own_token(sim: RunningSimulator, receiver: EventReceiver) -> None:
    auth = _install(sim, receiver, user_id=503)
    answer = _call(sim, "batch", auth["access_token"], {"cmd": {
        "task": "tasks.task.add?fields[TITLE]=Batched&auth=some-other-token",
        "user": "user.get?ID=503",
    }})
    result = answer.json()["result"]
    assert answer.status_code == 200 and result["result_error"] == []
    assert result["result"]["task"]["task"]["createdBy"] == "503"
    [call] = sim.control.calls("batch")["calls"]
    assert call["params"]["cmd"]["task"] == "tasks.task.add?fields[TITLE]=Batched"


def test_token_values_never_reach_the_call_log(sim: RunningSimulator, receiver: EventReceiver) -> None:
    auth = _install(sim, receiver)
    token = auth["access_token"]
    _call(sim, "user.get", token)
    httpx.get(f"{sim.client_endpoint}user.get", params={"auth": token, "ID": 1})
    httpx.post(f"{sim.client_endpoint}user.get", data={"auth": token, "ID": "1"})
    _call(sim, "batch", token, {"cmd": [f"user.get?auth={token}&ID=1"]})
    _call(sim, "user.get", "forged-token-value")
    _refresh(sim, auth["refresh_token"])
    sim.control.expire_tokens()
    _call(sim, "user.get", token)

    calls = sim.control.calls()
    assert len(calls["calls"]) == 6
    logged = json.dumps(calls) + json.dumps(sim.control.oauth_stats())
    for secret in (token, auth["refresh_token"], "forged-token-value", "sim-app-secret"):
        assert secret not in logged


def test_reset_uninstalls_the_app_and_revokes_its_tokens(sim: RunningSimulator, receiver: EventReceiver) -> None:
    auth = _install(sim, receiver)
    sim.control.reset()
    assert _call(sim, "user.get", auth["access_token"]).json()["error"] == "invalid_token"
    assert _refresh(sim, auth["refresh_token"]).json()["error"] == "invalid_grant"
    assert sim.control.app()["installed"] is False
