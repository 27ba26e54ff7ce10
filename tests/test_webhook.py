"""The webhook endpoint, driven through the real ASGI app with a real Redis behind it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from b24notify.dueset import DueSetKeys
from b24notify.keys import TASKS
from b24notify.metrics import decode_counters, total
from b24notify.phpform import encode_php_query
from b24notify.service.app import create_app

TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
DOMAIN = "acme.bitrix24.com"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def event(name: str = "ONTASKUPDATE", task: object = 123, token: str | None = TOKEN, **extra: object) -> dict:
    data: dict = {"FIELDS_BEFORE": {"ID": task}, "FIELDS_AFTER": {"ID": task},
                  "IS_ACCESSIBLE_BEFORE": "undefined", "IS_ACCESSIBLE_AFTER": "undefined"}
    if name == "ONTASKCOMMENTADD":
        data = {"FIELDS_BEFORE": "undefined", "FIELDS_AFTER": {"ID": 555, "TASK_ID": task},
                "IS_ACCESSIBLE_BEFORE": "N", "IS_ACCESSIBLE_AFTER": "undefined"}
    if name == "ONTASKDELETE":
        data = {"FIELDS_BEFORE": {"ID": task}, "FIELDS_AFTER": "undefined"}
    auth = {"domain": DOMAIN, "client_endpoint": f"https://{DOMAIN}/rest/",
            "server_endpoint": "https://oauth.bitrix.info/rest/", "member_id": "a223c6b3710f85df22e9377d6c4f7553"}
    if token is not None:
        auth["application_token"] = token
    payload = {"event": name, "event_handler_id": "975", "data": data, "ts": "1466439714", "auth": auth}
    payload.update(extra)
    return payload


@pytest.fixture
def settings(make_settings):
    return make_settings(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN,
                         b24notify_debounce_seconds=1.0)


@pytest.fixture
def client(settings, redis) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def due(keys) -> DueSetKeys:
    return DueSetKeys.of(keys, TASKS)


def post_form(client: TestClient, payload: dict) -> object:
    return client.post("/webhooks/bitrix24", content=encode_php_query(payload), headers=FORM)


def queued(redis, due) -> list[str]:
    return [m.decode() for m in redis.zrange(due.due, 0, -1)]


def test_form_event_is_accepted_and_queued_once(client, redis, due, keys):
    response = post_form(client, event())
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "task": 123, "coalesced": False}
    assert queued(redis, due) == [f"{DOMAIN}|123"]
    counters = decode_counters(redis.hgetall(keys.metrics()))
    assert total(counters, "b24notify_events", type="ONTASKUPDATE", outcome="accepted") == 1


def test_burst_for_one_task_is_coalesced(client, redis, due):
    answers = [post_form(client, event()).json()["coalesced"] for _ in range(10)]
    assert answers == [False] + [True] * 9
    assert queued(redis, due) == [f"{DOMAIN}|123"]


def test_json_body_is_accepted_too(client, redis, due):
    response = client.post("/webhooks/bitrix24", content=json.dumps(event(task=77)),
                           headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert queued(redis, due) == [f"{DOMAIN}|77"]


def test_new_task_card_comment_event_is_accepted(client, redis, due):
    payload = event("ONTASKCOMMENTADD", task=555)
    payload["data"]["FIELDS_AFTER"] = {"ID": 0, "TASK_ID": 555, "MESSAGE_ID": 1458}
    assert post_form(client, payload).status_code == 200
    assert queued(redis, due) == [f"{DOMAIN}|555"]


def test_task_delete_marks_the_task_for_dropping(client, redis, keys):
    assert post_form(client, event("ONTASKDELETE", task=9)).status_code == 200
    assert redis.smembers(keys.drop()) == {f"{DOMAIN}|9".encode()}


def test_other_events_are_ignored_with_200(client, redis, due):
    response = post_form(client, event("ONCRMDEALADD"))
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert queued(redis, due) == []


@pytest.mark.parametrize(
    ("payload", "status", "reason"),
    [
        (event(token=None), 401, "missing_token"),
        (event(token="wrong-token-of-the-same-length!!"), 401, "bad_token"),
        (event(task="abc"), 400, "malformed"),
        (event(task=""), 400, "malformed"),
        (event(task=-5), 400, "malformed"),
        (event(task=2**70), 400, "malformed"),
        (event(data="undefined"), 400, "malformed"),
        (event(auth={"domain": "evil.example.com", "application_token": TOKEN}), 403, "wrong_portal"),
    ],
)
def test_rejections_say_why_and_enqueue_nothing(client, redis, due, payload, status, reason):
    response = post_form(client, payload)
    assert response.status_code == status
    assert response.json()["reason"] == reason and response.json()["detail"]
    assert queued(redis, due) == []


def test_body_over_64_kib_is_413(client, redis, due):
    payload = event(padding="x" * 70_000)
    response = post_form(client, payload)
    assert response.status_code == 413
    streamed = client.post("/webhooks/bitrix24", headers=FORM,
                           content=iter([encode_php_query(event()).encode(), b"&p=" + b"x" * 70_000]))
    assert streamed.status_code == 413
    assert queued(redis, due) == []


def test_other_content_types_are_415(client, redis, due):
    response = client.post("/webhooks/bitrix24", content="event=ONTASKUPDATE", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and response.json()["reason"] == "unsupported_media_type"
    assert queued(redis, due) == []


def test_non_utf8_and_broken_json_are_400(client, redis, due):
    assert client.post("/webhooks/bitrix24", content=b"event=\xff\xfe", headers=FORM).status_code == 400
    assert client.post("/webhooks/bitrix24", content=b"{nope",
                       headers={"content-type": "application/json"}).status_code == 400
    assert queued(redis, due) == []


def test_rejected_requests_are_counted_after_the_answer(client, redis, keys):
    post_form(client, event(token="nope"))
    counters = decode_counters(redis.hgetall(keys.metrics()))
    assert total(counters, "b24notify_events", outcome="bad_token") == 1


def test_health_ready_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    post_form(client, event())
    text = client.get("/metrics").text
    assert 'b24notify_events_total{outcome="accepted",type="ONTASKUPDATE"} 1.0' in text
    assert "b24notify_tasks_due 1.0" in text


def test_readyz_reports_an_unreachable_redis(make_settings):
    settings = make_settings(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN,
                             redis_url="redis://127.0.0.1:9/0")
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503 and "unreachable" in response.json()["redis"]
        assert client.get("/healthz").status_code == 200
        assert post_form(client, event()).status_code == 503


def test_readyz_reports_a_halted_portal(client, redis, keys):
    redis.set(keys.halted(DOMAIN), "tasks.task.result.list NO_AUTH_FOUND (HTTP 401)")
    response = client.get("/readyz")
    assert response.status_code == 503 and "NO_AUTH_FOUND" in response.json()["portal"]


def test_lone_surrogates_in_json_credentials_are_rejected_not_crashing(make_settings, redis, due):
    settings = make_settings(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN,
                             b24_member_id="a223c6b3710f85df22e9377d6c4f7553")
    with TestClient(create_app(settings)) as client:
        bad_token = '{"event": "ONTASKUPDATE", "auth": {"application_token": "\\ud800"}}'
        bad_member = json.dumps(event()).replace('"a223c6b3710f85df22e9377d6c4f7553"', '"\\u00e9\\ud800"')
        for body, status in ((bad_token, 401), (bad_member, 403)):
            response = client.post("/webhooks/bitrix24", content=body, headers={"content-type": "application/json"})
            assert response.status_code == status
        assert queued(redis, due) == []


def test_in_a_burst_tasks_wait_the_whole_cap(make_settings, redis, due):
    settings = make_settings(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN,
                             b24notify_debounce_seconds=1.0, b24notify_debounce_max_seconds=5.0,
                             b24notify_burst_events_per_second=4)
    with TestClient(create_app(settings)) as burst_client:
        start = time.time()
        for task in (1, 2, 3):  # below the threshold: the ordinary trailing debounce
            assert post_form(burst_client, event(task=task)).status_code == 200
        for task in (4, 5, 1):  # the 4th event within the second and on: a burst
            assert post_form(burst_client, event(task=task)).status_code == 200
        elapsed = time.time() - start
    scores = {m.decode().split("|")[1]: s - start for m, s in redis.zrange(due.due, 0, -1, withscores=True)}
    assert elapsed < 0.9  # all six events fell into one second
    assert 0.9 < scores["2"] < 1.0 + elapsed and 0.9 < scores["3"] < 1.0 + elapsed
    # In a burst a run trails the last event by the cap, on the next line of a 2 s grid, so the tasks of
    # a burst fall due together and fill batches; "1" was already due and is pushed the same way.
    for task in ("4", "5", "1"):
        due_at = scores[task] + start
        assert 5.0 <= scores[task] <= 7.0 + elapsed and due_at == int(due_at) and int(due_at) % 2 == 0


def test_a_long_burst_still_reads_a_task_within_three_caps(make_settings, redis, due, keys):
    settings = make_settings(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN,
                             b24notify_debounce_seconds=1.0, b24notify_debounce_max_seconds=5.0,
                             b24notify_burst_events_per_second=1)
    member = f"{DOMAIN}|9"
    with TestClient(create_app(settings)) as burst_client:
        assert post_form(burst_client, event(task=9)).status_code == 200
        # As if the task's first event had come 14 s ago: the next one may not push it past 15 s.
        redis.hset(due.since, member, time.time() - 14)
        assert post_form(burst_client, event(task=9)).status_code == 200
    assert redis.zscore(due.due, member) - time.time() < 1.5


def test_no_burst_mode_when_switched_off(make_settings, redis, due):
    settings = make_settings(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN,
                             b24notify_debounce_seconds=1.0, b24notify_burst_events_per_second=0)
    with TestClient(create_app(settings)) as plain_client:
        start = time.time()
        for task in range(1, 11):
            assert post_form(plain_client, event(task=task)).status_code == 200
    assert all(s - start < 2.0 for _, s in redis.zrange(due.due, 0, -1, withscores=True))


def test_metrics_need_the_bearer_token_when_one_is_set(make_settings):
    settings = make_settings(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN,
                             b24notify_metrics_token="scrape-me")
    with TestClient(create_app(settings)) as client:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "scrape-me"}):
            response = client.get("/metrics", headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert "b24notify" not in response.text.replace("B24NOTIFY_METRICS_TOKEN", "")
        assert client.get("/metrics", headers={"authorization": "Bearer scrape-me"}).status_code == 200
        # Health endpoints stay open: load balancers and container healthchecks use them.
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
