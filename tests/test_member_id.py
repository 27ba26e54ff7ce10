"""A portal known by its ``member_id`` (``B24_MEMBER_ID``, a TOML portal's ``member_id``, an app
install) accepts only events that name it: one without ``auth[member_id]`` is refused with 403
and a reason, and nothing is queued. A portal configured without one accepts events as before."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from b24notify.keys import TASKS
from b24notify.phpform import encode_php_query
from b24notify.portals.registry import AppInstall, AppRegistry
from b24notify.service.app import create_app

TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
MEMBER = "a223c6b3710f85df22e9377d6c4f7553"
DOMAIN = "acme.bitrix24.com"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def task_event(domain: str = DOMAIN, token: str = TOKEN, member_id: str | None = MEMBER) -> dict:
    auth = {"domain": domain, "client_endpoint": f"https://{domain}/rest/",
            "server_endpoint": "https://oauth.bitrix.info/rest/", "application_token": token}
    if member_id is not None:
        auth["member_id"] = member_id
    return {"event": "ONTASKUPDATE", "data": {"FIELDS_BEFORE": {"ID": 5}, "FIELDS_AFTER": {"ID": 5}},
            "ts": "1466439714", "auth": auth}


def post(client: TestClient, payload: dict):
    return client.post("/webhooks/bitrix24", content=encode_php_query(payload), headers=FORM)


@pytest.fixture
def web(make_settings, redis) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def start(**overrides: object) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def assert_refused_for_missing_member(response, redis, keys) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["reason"] == "wrong_portal"
    assert body["detail"] == "auth[member_id] is missing; this portal's events must carry it"
    assert redis.zcard(keys.due(TASKS)) == 0


def test_event_without_member_id_is_refused_when_b24_member_id_is_set(web, redis, keys):
    client = web(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN,
                 b24_member_id=MEMBER)
    assert_refused_for_missing_member(post(client, task_event(member_id=None)), redis, keys)
    assert_refused_for_missing_member(post(client, task_event(member_id="")), redis, keys)
    assert post(client, task_event(member_id="another-portal")).status_code == 403
    assert redis.zcard(keys.due(TASKS)) == 0
    assert post(client, task_event()).status_code == 200  # the genuine event still gets in
    assert redis.zcard(keys.due(TASKS)) == 1


def test_event_without_member_id_is_refused_for_a_toml_portal_with_one(web, redis, keys, tmp_path: Path):
    config = tmp_path / "portals.toml"
    config.write_text(f'''
[[portals]]
webhook_url = "https://{DOMAIN}/rest/1/code/"
application_token = "{TOKEN}"
member_id = "{MEMBER}"

[[portals]]
webhook_url = "https://other.bitrix24.com/rest/7/code/"
application_token = "other-token"
''', encoding="utf-8")
    client = web(b24notify_config=str(config), notify_chat="chat1")
    assert_refused_for_missing_member(post(client, task_event(member_id=None)), redis, keys)
    # The other portal has no member_id configured: its events need none.
    assert post(client, task_event("other.bitrix24.com", "other-token", member_id=None)).status_code == 200
    assert post(client, task_event()).status_code == 200
    assert redis.zcard(keys.due(TASKS)) == 2


def test_event_without_member_id_is_refused_for_an_app_install(web, redis, keys):
    AppRegistry(redis, keys).save(AppInstall(
        domain=DOMAIN, member_id=MEMBER, client_endpoint=f"https://{DOMAIN}/rest/", application_token=TOKEN,
        access_token="access", refresh_token="refresh", expires=0.0, user_id=1))
    client = web(b24_client_id="app.test.1", b24_client_secret="secret", notify_chat="chat1")
    assert_refused_for_missing_member(post(client, task_event(member_id=None)), redis, keys)
    assert post(client, task_event()).status_code == 200
    assert redis.zcard(keys.due(TASKS)) == 1


def test_a_portal_without_member_id_accepts_events_without_one(web, redis, keys):
    client = web(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN)
    assert post(client, task_event(member_id=None)).status_code == 200
    assert redis.zcard(keys.due(TASKS)) == 1
