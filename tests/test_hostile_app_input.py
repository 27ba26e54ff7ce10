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

from b24notify.keys import Keys
from b24notify.phpform import encode_php_query
from b24notify.portals.registry import AppRegistry
from b24notify.service.app import create_app
from b24notify.simulator import OAuthAuthority, RunningSimulator, SimulatorConfig

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
