"""Hostile install, uninstall and task events at an app-mode endpoint (real ASGI app, real Redis,
the simulator as the OAuth server): always a 4xx with a reason, never a 5xx, no portal stored,
nothing queued, and the OAuth server never asked to refresh a token it did not issue more than
the input demands."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from b24notify.devtools.simulator import OAuthAuthority, RunningSimulator, SimulatorConfig
from b24notify.keys import Keys
from b24notify.phpform import encode_php_query
from b24notify.portals.registry import AppRegistry
from b24notify.service.app import create_app

FORM = {"content-type": "application/x-www-form-urlencoded"}
hostile = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.function_scoped_fixture])

texts = st.one_of(st.text(max_size=60), st.sampled_from(["", "0", "-1", "1e9", "x" * 300, "https://evil.example/rest/",
                                                         "http://127.0.0.1:1/rest/", "javascript:alert(1)"]))
auth_fields = st.fixed_dictionaries({}, optional={
    "domain": texts, "member_id": texts, "client_endpoint": texts, "application_token": texts,
    "refresh_token": texts, "access_token": texts, "user_id": texts,
})


@pytest.fixture
def app_client(make_settings, redis) -> Iterator[tuple[TestClient, RunningSimulator]]:
    authority = OAuthAuthority(client_id="app.sim.1", client_secret="sim-app-secret")
    with RunningSimulator(SimulatorConfig(bucket_capacity=0), authority=authority) as sim:
        settings_ = make_settings(b24_client_id="app.sim.1", b24_client_secret="sim-app-secret",
                                  b24_oauth_url=sim.oauth_url, notify_chat="chat1")
        with TestClient(create_app(settings_)) as client:
            yield client, sim


def test_hostile_app_events_never_store_or_queue_anything(app_client, redis, keys: Keys):
    client, sim = app_client

    @hostile
    @given(name=st.sampled_from(["ONAPPINSTALL", "ONAPPUNINSTALL", "onappinstall", "ONTASKUPDATE"]),
           auth=auth_fields, as_json=st.booleans(), genuine_portal=st.booleans())
    def check(name: str, auth: dict[str, str], as_json: bool, genuine_portal: bool) -> None:
        if genuine_portal:  # the real portal's address, with made-up tokens: the OAuth server must say no
            auth = {**auth, "domain": sim.domain, "client_endpoint": sim.client_endpoint,
                    "member_id": sim.config.member_id}
        payload = {"event": name, "data": {"VERSION": "1", "FIELDS_AFTER": {"ID": "5"}}, "auth": auth}
        if as_json:
            response = client.post("/webhooks/bitrix24", json=payload)
        else:
            response = client.post("/webhooks/bitrix24", content=encode_php_query(payload), headers=FORM)
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
        assert response.json()["reason"]
        assert AppRegistry(redis, keys).portals() == []
        assert redis.zcard(keys.due("tasks")) == 0

    check()
    assert client.get("/healthz").status_code == 200
    # The real portal's address with a made-up refresh token: the OAuth server is asked, and says no.
    forged = {"event": "ONAPPINSTALL", "auth": {
        "domain": sim.domain, "client_endpoint": sim.client_endpoint, "member_id": sim.config.member_id,
        "application_token": "forged", "refresh_token": "made-up", "access_token": "made-up"}}
    response = client.post("/webhooks/bitrix24", content=encode_php_query(forged), headers=FORM)
    assert response.status_code == 403 and response.json()["reason"] == "install_unverified"
    assert sim.authority.invalid_grants >= 1
    assert sim.authority.refreshes == 0  # nothing hostile got a token refreshed
    assert AppRegistry(redis, keys).portals() == []


def test_install_is_refused_when_the_oauth_server_does_not_confirm_the_endpoint(make_settings, redis, keys: Keys):
    """Fail closed: an OAuth answer without ``client_endpoint`` confirms nothing, so the endpoint the
    event claims (here a host that must never be called) is not stored."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.support.servers import CountingListener, ThreadedServer

    asked: list[str] = []

    async def token(request: Request) -> JSONResponse:
        asked.append(request.query_params.get("grant_type", ""))
        # A valid-looking grant for the claimed member_id, but no client_endpoint at all.
        return JSONResponse({"access_token": "a1", "refresh_token": "r2", "expires_in": 3600,
                             "member_id": "member-x", "user_id": 1, "domain": "oauth.bitrix.info"})

    listener = CountingListener()
    try:
        with ThreadedServer(Starlette(routes=[Route("/oauth/token/", token)])) as oauth:
            settings_ = make_settings(b24_client_id="app.sim.1", b24_client_secret="sim-app-secret",
                                      b24_oauth_url=f"{oauth.url}/oauth/token/", notify_chat="chat1")
            with TestClient(create_app(settings_)) as client:
                install = {"event": "ONAPPINSTALL", "data": {"VERSION": "1"}, "auth": {
                    "domain": listener.host, "client_endpoint": listener.url, "member_id": "member-x",
                    "application_token": "app-token", "refresh_token": "r1", "access_token": "a0",
                    "user_id": "1"}}
                response = client.post("/webhooks/bitrix24", content=encode_php_query(install), headers=FORM)
        assert asked == ["refresh_token"]  # the OAuth server was asked, and its answer was read
        assert response.status_code == 403, response.text
        assert response.json()["reason"] == "install_unverified"
        assert "client_endpoint" in response.json()["detail"]
        assert AppRegistry(redis, keys).portals() == []
        assert listener.hits == 0
    finally:
        listener.close()
