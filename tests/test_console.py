"""The operator console's pages, through the real ASGI app, a real Redis and, for the trace and the
dead letters, real alerts flowing from the simulator through sync and delivery in-process."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from b24notify.console.auth import COOKIE, Session, SessionCodec
from b24notify.console.charts import chart_svg
from b24notify.console.lang import from_accept_language
from b24notify.console.overview import DeliveryOwners
from b24notify.deadletter import DeadLetters
from b24notify.keys import DELIVERIES, TASKS, task_member
from b24notify.series import REST, SENT, Series
from b24notify.service.app import create_app
from b24notify.workers.context import WorkerContext
from tests.support.pipeline import deliver_all, sync

PASSWORD = "correct horse battery staple"


@pytest.fixture
def settings(make_settings, simulator, sink):
    """conftest's settings (the simulator, the SMTP sink), with the console on."""
    return make_settings(
        b24_webhook_url=simulator.webhook_url, b24_application_token=simulator.config.application_token,
        notify_chat="chat42", notify_email="team@example.com", smtp_url=sink.url,
        email_from="b24notify@example.com", b24notify_delivery_retry_seconds="10,60",
        b24notify_console_password=PASSWORD,
    )


@pytest.fixture
def client(settings, redis) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        form = test_client.get("/console/login")
        answer = test_client.post("/console/login", data={"csrf": csrf_of(form.text), "password": PASSWORD},
                                  follow_redirects=False)
        assert answer.status_code == 303
        yield test_client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match[1]


def text_of(html: str) -> str:
    """The page's words, without tags and runs of spaces."""
    return " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", html, flags=re.S)).split())


def new_result(ctx: WorkerContext, user, text: str = "Done") -> tuple[int, int]:
    """A task with one new result, synced and delivered (chat and e-mail): (task id, result id)."""
    task = user.add_task("Sign the supply contract")
    sync(ctx, task)
    user.comment(task, text, as_result=True)
    sync(ctx, task)
    (result,) = user.results(task)
    return task, int(result["id"])


def dead_mail(ctx: WorkerContext, user, sink, refusals: int = 1) -> tuple[int, str]:
    """A new result whose e-mail the server refuses for good (550): (task id, dead delivery id).
    ``refusals``: also refuse the mails of other deliveries due now."""
    task = user.add_task()
    sync(ctx, task)
    user.comment(task, "Done", as_result=True)
    sync(ctx, task)
    sink.refuse_next(refusals, code=550)
    deliver_all(ctx)
    (dead,) = [d.id for d in DeadLetters(ctx.redis, ctx.keys).entries() if d.id.startswith(f"{ctx.portal}:{task}:")]
    return task, dead


def test_the_trace_shows_a_real_alert_newest_first_with_a_link_to_the_task(ctx, client, simulator, user):
    task, result = new_result(ctx, user)
    assert sorted(deliver_all(ctx)) == ["sent", "sent"]
    page = client.get("/console/trace", params={"task": task})
    assert page.status_code == 200
    words = text_of(page.text)
    assert f"Task #{task} on {ctx.portal}" in words
    steps = re.findall(r'data-step="(\w+)"', page.text)
    assert steps[:2] == ["delivery", "delivery"] and "sync" in steps[2:]  # newest first
    assert "chat:chat42" in page.text and "email:team@example.com" in page.text
    assert "Open the task in the portal" in words
    assert "Outcome sent" in words and "Trigger reconciliation poll" in words and "New results" in words
    link = re.search(r'class="task-link" href="([^"]+)"|href="([^"]+)" id="task-link-1"', page.text)
    assert link is not None
    assert (link[1] or link[2]) == f"{ctx.spec.portal_url}/company/personal/user/503/tasks/task/view/{task}/"
    # By result id: the task it belongs to, and the same timeline.
    by_result = client.get("/console/trace", params={"result": result})
    assert f"Result #{result} belongs to task #{task}." in text_of(by_result.text)
    assert re.findall(r'data-step="(\w+)"', by_result.text) == steps
    # Unknown, and wrong, searches say so.
    assert "Nothing is recorded for task #999999." in text_of(client.get("/console/trace?task=999999").text)
    assert "No recorded sync names result #424242." in text_of(client.get("/console/trace?result=424242").text)
    assert client.get("/console/trace?task=abc").status_code == 400
    assert client.get("/console/trace?task=1&portal=other.example").status_code == 404


def test_recent_alerts_list_recipient_channel_and_outcome(ctx, client, user):
    task, _ = new_result(ctx, user)
    deliver_all(ctx)
    page = client.get("/console/alerts")
    assert page.status_code == 200
    rows = re.findall(r'<tr class="alert outcome-(\w+)"', page.text)
    assert rows == ["sent", "sent"]
    assert "chat:chat42" in page.text and "email:team@example.com" in page.text
    assert f'href="/console/trace?task={task}&amp;portal=' in page.text
    assert len(re.findall(r'<tr class="alert ', client.get("/console/alerts?limit=1").text)) == 1


def test_dead_letters_replay_one_and_a_filtered_set_after_confirming_the_count(ctx, client, user, sink, redis, keys):
    first_task, first = dead_mail(ctx, user, sink)
    _, second = dead_mail(ctx, user, sink)
    page = client.get("/console/deadletters")
    assert set(re.findall(r'data-delivery="([^"]+)"', page.text)) == {first, second}
    assert "2 dead deliveries match." in text_of(page.text)
    assert "550" in page.text
    # Filters: channel, reason (any case), portal.
    assert re.findall(r'data-delivery="([^"]+)"', client.get("/console/deadletters?channel=chat").text) == []
    assert len(re.findall(r'data-delivery=', client.get("/console/deadletters?channel=email&reason=550").text)) == 2
    assert len(re.findall(r'data-delivery=', client.get(f"/console/deadletters?portal={ctx.portal}").text)) == 2
    assert re.findall(r'data-delivery=', client.get("/console/deadletters?reason=no+such+reason").text) == []

    # Replay one: it leaves the list, is due again, and the replay is in the task's trace.
    answer = client.post("/console/deadletters/replay", data={"csrf": csrf_of(page.text), "id": first},
                         follow_redirects=False)
    assert answer.status_code == 303
    after = client.get(answer.headers["location"])
    assert "1 delivery queued again." in text_of(after.text)
    assert re.findall(r'data-delivery="([^"]+)"', after.text) == [second]
    assert redis.zscore(keys.due(DELIVERIES), first) is not None
    trace = client.get("/console/trace", params={"task": first_task})
    assert re.findall(r'data-step="(\w+)"', trace.text)[0] == "replay"
    assert "console:testclient" in trace.text

    # Replay the filtered set: a confirmation with the count first, nothing replayed yet.
    token = csrf_of(after.text)
    confirm = client.post("/console/deadletters/replay-all", data={"csrf": token, "channel": "email"})
    assert confirm.status_code == 200
    assert 'data-count="1"' in confirm.text
    assert "1 dead delivery will be queued again." in text_of(confirm.text)
    assert 'href="/console/deadletters?lang=ru"' in confirm.text  # not the POST-only address
    assert redis.zscore(keys.deadletter(), second) is not None
    fingerprint = re.search(r'name="fingerprint" value="([^"]+)"', confirm.text)[1]
    # Meanwhile the replayed one is refused again and another one dies: the confirmed count no
    # longer holds, so it asks again and replays nothing.
    _, third = dead_mail(ctx, user, sink, refusals=2)
    stale = client.post("/console/deadletters/replay-all", data={
        "csrf": token, "channel": "email", "confirm": "1", "count": "1", "fingerprint": fingerprint})
    assert stale.status_code == 200
    assert 'data-count="3"' in stale.text and 'id="confirm-changed"' in stale.text
    assert DeadLetters(redis, keys).count() == 3
    fresh = re.search(r'name="fingerprint" value="([^"]+)"', stale.text)[1]
    done = client.post("/console/deadletters/replay-all", data={
        "csrf": token, "channel": "email", "confirm": "1", "count": "3", "fingerprint": fresh},
        follow_redirects=False)
    assert done.status_code == 303
    assert "3 deliveries queued again." in text_of(client.get(done.headers["location"]).text)
    assert DeadLetters(redis, keys).count() == 0
    assert {redis.zscore(keys.due(DELIVERIES), d) is not None for d in (first, second, third)} == {True}
    # Replayed, they go out this time.
    assert sorted(deliver_all(ctx)) == ["sent", "sent", "sent"]


def test_the_overview_shows_each_portal_paused_first(make_settings, redis, keys, tmp_path):
    config = tmp_path / "portals.toml"
    config.write_text(
        '[[portals]]\nwebhook_url = "https://alpha.example.com/rest/1/alphacode1234/"\n'
        'application_token = "alphatoken123"\nnotify_chat = "chat1"\n\n'
        '[[portals]]\nwebhook_url = "https://zulu.example.com/rest/7/zulucode12345/"\n'
        'application_token = "zulutoken1234"\nnotify_chat = "chat2"\n', encoding="utf-8")
    settings = make_settings(b24notify_config=str(config), b24notify_console_password=PASSWORD)
    now = time.time()
    redis.set(keys.halted("zulu.example.com"), "tasks.task.list ACCESS_DENIED (HTTP 403)", ex=300)
    redis.hset(f"{keys.operating('alpha.example.com')}:reset_at", "tasks.task.get", now + 300)
    redis.set(f"{keys.operating('alpha.example.com')}:pause:tasks.task.get", repr(now + 300), ex=300)
    redis.zadd(keys.due(TASKS), {task_member("alpha.example.com", 11): now - 90,
                                 task_member("alpha.example.com", 12): now + 60})
    redis.zadd(keys.lease(TASKS), {task_member("alpha.example.com", 13): now + 60})
    redis.zadd(keys.watch_next("alpha.example.com"), {"11": now, "12": now, "13": now})
    redis.zadd(keys.watch_active("alpha.example.com"), {"11": now - 30})
    redis.zadd(keys.deadletter(), {"alpha.example.com:11:r1:new|chat:chat1": now})
    Series(redis, keys).record("alpha.example.com", REST, 5)
    Series(redis, keys).record("alpha.example.com", SENT, 2)
    with TestClient(create_app(settings)) as client:
        form = client.get("/console/login")
        client.post("/console/login", data={"csrf": csrf_of(form.text), "password": PASSWORD})
        page = client.get("/console")
    assert page.status_code == 200
    assert '<meta http-equiv="refresh" content="10">' in page.text
    assert re.findall(r'data-portal="([^"]+)"', page.text) == ["zulu.example.com", "alpha.example.com"]
    zulu, alpha = page.text.split('data-portal="alpha.example.com"')
    zulu_words, alpha_words = text_of(zulu), text_of(alpha)
    assert "Calls paused: tasks.task.list ACCESS_DENIED (HTTP 403)" in zulu_words
    assert "What to do: check B24_WEBHOOK_URL, its scopes (task, im, user) and the portal plan" in zulu_words
    assert "Calls allowed" in alpha_words
    assert "tasks.task.get paused until" in alpha_words
    assert "1 due, 1 later, 1 running" in alpha_words
    assert "Oldest due task waits 2 minutes" in alpha_words
    assert "Watched tasks 3" in alpha_words
    assert "REST requests, last hour 5 of 5760" in alpha_words  # 2/s minus the 20 % reserve, for an hour
    assert "Alerts sent, last 24 hours 2" in alpha_words
    assert "Dead letters 1" in alpha_words
    assert alpha.count("<svg") == 1 and 'class="rest"' in alpha and 'class="budget"' in alpha
    assert "alphacode1234" not in page.text and "zulutoken1234" not in page.text


def test_words_follow_the_browser_language_and_the_switch_is_remembered(client):
    russian = client.get("/console", headers={"accept-language": "ru-RU,ru;q=0.9,en;q=0.8"})
    assert '<html lang="ru">' in russian.text
    assert "Обзор" in russian.text and "Неотправленные" in russian.text
    switched = client.get("/console/deadletters?lang=en", headers={"accept-language": "ru"})
    assert '<html lang="en">' in switched.text and "Dead letters" in switched.text
    # Remembered in the session: the next page is English although the browser asks for Russian.
    assert '<html lang="en">' in client.get("/console/alerts", headers={"accept-language": "ru"}).text
    assert '<html lang="ru">' in client.get("/console?lang=ru").text
    assert "Обзор" in client.get("/console").text


def test_accept_language_picks_our_best_language():
    assert from_accept_language("ru-RU,ru;q=0.9,en;q=0.8") == "ru"
    assert from_accept_language("de-DE,de;q=0.9,en;q=0.5,ru;q=0.4") == "en"
    assert from_accept_language("en;q=0.2, ru;q=0.8") == "ru"
    assert from_accept_language("fr") == "en"
    assert from_accept_language(None) == "en"


def test_a_delivery_belongs_to_the_longest_portal_key_it_starts_with():
    owner = DeliveryOwners(["acme.com", "acme.com:8443"])
    assert owner("acme.com:8443:12:r1:new|chat:chat1") == "acme.com:8443"
    assert owner("acme.com:12:r1:new|chat:chat1") == "acme.com"
    assert owner("other.com:12:r1:new|chat:chat1") is None


def test_the_chart_draws_bars_against_the_budget_line_and_nothing_else():
    svg = chart_svg([0, 3, None, 10], 8.0, sent=[1, 0, 0, 2], failed=[0, 0, 0, 1], title="REST <calls>")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="rest"') == 2  # zero and unknown draw no bar
    assert svg.count('class="budget"') == 1
    assert svg.count('class="sent"') == 2 and svg.count('class="failed"') == 1
    assert "<title>REST &lt;calls&gt;</title>" in svg
    assert "<script" not in svg and "href" not in svg
    assert 'class="budget"' not in chart_svg([1, 2], None)


def test_a_redis_outage_is_a_page_that_says_so(make_settings):
    settings = make_settings(b24_webhook_url="https://acme.bitrix24.com/rest/1/code12345/",
                             b24_application_token="token12345", notify_chat="chat42",
                             b24notify_console_password=PASSWORD, redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings)) as visitor:
        form = visitor.get("/console/login")  # needs no Redis
        answer = visitor.post("/console/login", data={"csrf": csrf_of(form.text), "password": PASSWORD},
                              follow_redirects=False)
        assert answer.status_code == 503 and "Redis did not answer" in answer.text
        assert COOKIE not in answer.cookies  # no login when the rate limit cannot be checked
    with TestClient(create_app(settings)) as operator:
        operator.cookies.set(COOKIE, SessionCodec(settings.console_session_key()).dumps(Session.fresh(user=True)),
                             path="/console")
        for path in ("/console", "/console/deadletters", "/console/alerts", "/console/trace?task=1"):
            answer = operator.get(path)
            assert answer.status_code == 503 and "Redis did not answer" in answer.text, path
