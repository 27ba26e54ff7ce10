"""End to end with real processes: the simulator fires events at `b24notify serve`, two
`b24notify worker` processes sync and deliver; people get exactly one chat message and one mail
per new and per closed result, and none for results from before the portal was connected."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from b24notify.devtools.simulator import RunningSimulator, SimulatorConfig
from b24notify.devtools.smtp_sink import SmtpSink
from b24notify.phpform import encode_php_query
from tests.support.portal_user import PortalUser
from tests.support.processes import CliProcess, fleet_idle
from tests.support.servers import CountingListener, answers, free_port, wait_for

pytestmark = pytest.mark.e2e

HOT_POLL_SECONDS = 3.0


@pytest.fixture
def fleet(redis_url, key_prefix, redis) -> Iterator[dict]:
    web_port = free_port()
    handler = f"http://127.0.0.1:{web_port}/webhooks/bitrix24"
    processes: list[CliProcess] = []
    with SmtpSink() as sink, RunningSimulator(SimulatorConfig(handler_url=handler)) as sim:
        user = PortalUser(sim.webhook_url)
        env = {
            "REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": key_prefix, "B24NOTIFY_QUEUE": f"{key_prefix}-q",
            "B24_WEBHOOK_URL": sim.webhook_url, "B24_APPLICATION_TOKEN": sim.config.application_token,
            "NOTIFY_CHAT": "chat42", "NOTIFY_EMAIL": "team@example.com", "SMTP_URL": sink.url,
            "EMAIL_FROM": "b24notify@example.com", "B24NOTIFY_DEBOUNCE_SECONDS": "0.3",
            "B24NOTIFY_WATCH_HOT_SECONDS": str(HOT_POLL_SECONDS),
        }
        # A result that exists before b24notify is connected: the silent baseline.
        old_task = user.add_task("Old task")
        user.comment(old_task, "Finished long ago", as_result=True)
        sim.control.wait_events()
        created = int(time.time())
        wait_for(lambda: int(time.time()) > created, 2, "clock")  # results are stamped to the second
        processes.append(CliProcess(["serve", "--port", str(web_port)], env))
        wait_for(lambda: answers(f"http://127.0.0.1:{web_port}/readyz"), 20, "web did not start")
        processes += [CliProcess(["worker", "--name", f"{key_prefix}-w{i}"], env) for i in range(2)]
        try:
            yield {"sim": sim, "sink": sink, "user": user, "old_task": old_task, "web": handler, "env": env,
                   "processes": processes}
        finally:
            codes = [p.stop() for p in processes]
            user.close()
            for p in processes:
                if p.proc.returncode not in (0, -15):
                    print(f"--- {p.args} exited {p.proc.returncode}\n{p.output()[-4000:]}")
            assert all(code in (0, -15) for code in codes), codes


def chat(sim: RunningSimulator) -> list[str]:
    return [str(m["message"]) for m in sim.control.messages()]


def test_new_and_closed_results_reach_chat_and_mail_exactly_once(fleet):
    sim, sink, user = fleet["sim"], fleet["sink"], fleet["user"]
    task = user.add_task("Sign the supply contract")
    user.comment(task, "The client signed the documents", as_result=True)  # fires ONTASKCOMMENTADD
    wait_for(lambda: len(chat(sim)) >= 1, 30, "no chat message for the new result")
    sink.wait_for(1, timeout=30)
    user.complete(task)  # fires ONTASKUPDATE; the result closes
    wait_for(lambda: len(chat(sim)) >= 2, 30, "no chat message for the closed result")
    sink.wait_for(2, timeout=30)
    # Touch the old task: its baseline result must stay silent.
    user.call("tasks.task.update", {"taskId": fleet["old_task"], "fields": {"TITLE": "Old task, renamed"}})
    sim.control.wait_events()
    wait_for(lambda: _quiet(fleet), 30, "the fleet did not go quiet")
    messages = chat(sim)
    assert len(messages) == 2
    assert "New result" in messages[0] and "Result closed" in messages[1]
    assert all("Sign the supply contract" in m for m in messages)
    subjects = sorted(m["Subject"] for m in sink.messages)
    assert subjects == [f"New result in task #{task}: Sign the supply contract",
                        f"Result closed in task #{task}: Sign the supply contract"]


def _quiet(fleet: dict) -> bool:
    return fleet_idle(fleet["env"]["REDIS_URL"], fleet["env"]["B24NOTIFY_KEY_PREFIX"])


def test_forged_client_endpoint_is_never_called(fleet):
    sim, user = fleet["sim"], fleet["user"]
    listener = CountingListener()
    try:
        task = user.add_task("Forged")
        user.comment(task, "Pinned", as_result=True)
        payload = {
            "event": "ONTASKUPDATE", "data": {"FIELDS_BEFORE": {"ID": task}, "FIELDS_AFTER": {"ID": task}},
            "ts": "1", "auth": {"domain": sim.domain, "client_endpoint": listener.url,
                                "server_endpoint": listener.url, "member_id": sim.config.member_id,
                                "application_token": sim.config.application_token},
        }
        response = httpx.post(fleet["web"], content=encode_php_query(payload),
                              headers={"content-type": "application/x-www-form-urlencoded"})
        assert response.status_code == 200
        wait_for(lambda: len(chat(sim)) >= 1, 30, "the event was not processed")
        wait_for(lambda: _quiet(fleet), 30, "the fleet did not go quiet")
        assert listener.hits == 0
    finally:
        listener.close()


def test_result_pinned_without_an_event_is_notified_within_the_poll_bound(fleet):
    sim, sink, user = fleet["sim"], fleet["sink"], fleet["user"]
    task = user.add_task("Quiet pin")  # ONTASKADD: the task is now watched, polled every 3 s
    comment = user.comment(task, "Signed and scanned")  # a plain comment (an event, no result)
    wait_for(lambda: _quiet(fleet), 30, "the fleet did not go quiet")
    pinned_at = time.monotonic()
    user.pin(comment)  # tasks.task.result.addFromComment: no event at all
    wait_for(lambda: len(chat(sim)) >= 1, 30, "the pinned result was never noticed")
    noticed_after = time.monotonic() - pinned_at
    # Bound for a task active in the last hour: one poll interval, plus a reconcile tick (1 s),
    # plus the sync and the delivery.
    assert noticed_after <= HOT_POLL_SECONDS + 3.0, noticed_after
    assert "New result" in chat(sim)[0]
    sink.wait_for(1, timeout=10)
