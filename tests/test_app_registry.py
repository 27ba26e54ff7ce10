"""One install path (issue 8): an install through the web (a verified ONAPPINSTALL at the real ASGI
app) and one stored by ``AppRegistry.save`` (workers, tools, tests) run the same script and leave
the same state; so do the two uninstalls. Before, ``save`` kept a halt in place and set no
``connected_at``, so a portal stored that way was still paused and had no baseline time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from redis import Redis
from starlette.testclient import TestClient

from b24notify.devtools.simulator import OAuthAuthority, RunningSimulator, SimulatorConfig
from b24notify.keys import Keys, as_text
from b24notify.phpform import encode_php_query
from b24notify.portals.registry import AppInstall, AppRegistry, portal_state_keys
from b24notify.service.app import create_app

FORM = {"content-type": "application/x-www-form-urlencoded"}
CLIENT_ID, CLIENT_SECRET = "app.sim.1", "sim-app-secret"

Installer = Callable[[str], int]  # member_id -> 200 when stored, a 4xx when refused


@pytest.fixture
def portal(make_settings) -> Iterator[tuple[RunningSimulator, OAuthAuthority, TestClient]]:
    authority = OAuthAuthority(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with RunningSimulator(SimulatorConfig(bucket_capacity=0), authority=authority) as sim:
        settings = make_settings(b24_client_id=CLIENT_ID, b24_client_secret=CLIENT_SECRET,
                                 b24_oauth_url=sim.oauth_url, notify_chat="chat1")
        with TestClient(create_app(settings)) as client:
            yield sim, authority, client


def _by_web(sim: RunningSimulator, authority: OAuthAuthority, client: TestClient) -> Installer:
    def install(member_id: str) -> int:
        tokens = authority.issue(sim.config.member_id, sim.domain, sim.client_endpoint, 1)
        event = {"event": "ONAPPINSTALL", "data": {"VERSION": "1"}, "auth": {
            "domain": sim.domain, "client_endpoint": sim.client_endpoint, "member_id": member_id,
            "application_token": "app-token", "refresh_token": tokens["refresh_token"],
            "access_token": tokens["access_token"], "user_id": "1"}}
        return client.post("/webhooks/bitrix24", content=encode_php_query(event), headers=FORM).status_code
    return install


def _by_registry(sim: RunningSimulator, redis: Redis, keys: Keys) -> Installer:
    def install(member_id: str) -> int:
        stored = AppRegistry(redis, keys).save(AppInstall(sim.domain, member_id, sim.client_endpoint, "app-token",
                                                          "access", "refresh", 0.0, 1))
        return 200 if stored else 403
    return install


@pytest.mark.parametrize("path", ["web", "registry"])
def test_both_install_paths_clear_a_halt_keep_connected_at_and_refuse_another_member(path, portal, redis, keys):
    sim, authority, client = portal
    install = _by_web(sim, authority, client) if path == "web" else _by_registry(sim, redis, keys)
    redis.set(keys.halted(sim.domain), "invalid_grant")  # a refused refresh paused the portal
    redis.set(keys.connected_at(sim.domain), "2026-01-01T00:00:00+00:00")  # from an earlier install

    assert install(sim.config.member_id) == 200
    stored = AppRegistry(redis, keys).get(sim.domain)
    assert stored is not None and stored.member_id == sim.config.member_id
    assert stored.application_token == "app-token" and stored.client_endpoint == sim.client_endpoint
    assert AppRegistry(redis, keys).portals() == [sim.domain]
    assert not redis.exists(keys.halted(sim.domain)), "a reinstall is the operator's fix for a halt"
    assert as_text(redis.get(keys.connected_at(sim.domain))) == "2026-01-01T00:00:00+00:00"

    before = redis.hgetall(keys.app_install(sim.domain))
    assert install("another-member") == 403
    assert redis.hgetall(keys.app_install(sim.domain)) == before


@pytest.mark.parametrize("path", ["registry", "web"])
def test_first_install_sets_connected_at(path, portal, redis, keys):
    sim, authority, client = portal
    install = _by_web(sim, authority, client) if path == "web" else _by_registry(sim, redis, keys)
    assert install(sim.config.member_id) == 200
    assert redis.get(keys.connected_at(sim.domain)) is not None


@pytest.mark.parametrize("path", ["web", "registry"])
def test_both_uninstall_paths_forget_the_same_keys(path, portal, redis, keys):
    sim, authority, client = portal
    assert _by_web(sim, authority, client)(sim.config.member_id) == 200
    whole_portal = portal_state_keys(keys, sim.domain)
    for key in whole_portal:
        redis.set(key, "x", ex=600)
    if path == "web":
        event = {"event": "ONAPPUNINSTALL", "data": {"CLEAN": "0"},
                 "auth": {"domain": sim.domain, "member_id": sim.config.member_id, "application_token": "app-token"}}
        response = client.post("/webhooks/bitrix24", content=encode_php_query(event), headers=FORM)
        assert response.status_code == 200, response.text
    else:
        assert AppRegistry(redis, keys).remove(sim.domain)
    assert AppRegistry(redis, keys).get(sim.domain) is None and AppRegistry(redis, keys).portals() == []
    assert [key for key in whole_portal if redis.exists(key)] == []
    assert redis.hexists(keys.removed_portals(), sim.domain)  # the upkeep cleans its per-task state
