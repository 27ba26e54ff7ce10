"""Several portals served by one fleet (webhook mode, B24NOTIFY_CONFIG): each portal's events are
checked against its own token, its tasks are read through its own webhook and budget, and its
alerts go to its own chat and mailbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from b24notify.devtools.simulator import RunningSimulator, SimulatorConfig
from b24notify.devtools.smtp_sink import SmtpSink
from b24notify.keys import Keys
from b24notify.phpform import encode_php_query
from tests.support.portal_user import PortalUser
from tests.support.processes import CliProcess, fleet_idle
from tests.support.servers import answers, free_port, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_portals(redis_url, key_prefix, redis, tmp_path: Path) -> Iterator[dict]:
    web_port = free_port()
    handler = f"http://127.0.0.1:{web_port}/webhooks/bitrix24"
    config_a = SimulatorConfig(handler_url=handler, member_id="member-a", application_token="token-a")
    config_b = SimulatorConfig(handler_url=handler, member_id="member-b", application_token="token-b",
                               webhook_code="code-b")
    with SmtpSink() as sink, RunningSimulator(config_a) as sim_a, RunningSimulator(config_b) as sim_b:
        portals = tmp_path / "portals.toml"
        portals.write_text(f"""
[[portals]]
webhook_url = "{sim_a.webhook_url}"
application_token = "token-a"
member_id = "member-a"
notify_chat = "chat1"
notify_email = ["a-team@example.com"]

[[portals]]
webhook_url = "{sim_b.webhook_url}"
application_token = "token-b"
notify_chat = "chat2"
notify_email = ["b-team@example.com"]
rate_limit = "5/250"
""", encoding="utf-8")
        env = {
            "REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": key_prefix, "B24NOTIFY_QUEUE": f"{key_prefix}-q",
            "B24NOTIFY_CONFIG": str(portals), "SMTP_URL": sink.url, "EMAIL_FROM": "b24notify@example.com",
            "B24NOTIFY_DEBOUNCE_SECONDS": "0.2",
        }
        web = CliProcess(["serve", "--port", str(web_port)], env)
        wait_for(lambda: answers(f"http://127.0.0.1:{web_port}/readyz"), 20, "web did not start")
        worker = CliProcess(["worker", "--name", f"{key_prefix}-w"], env)
        users = PortalUser(sim_a.webhook_url), PortalUser(sim_b.webhook_url)
        try:
            yield {"a": sim_a, "b": sim_b, "users": users, "sink": sink, "env": env, "web": handler}
        finally:
            for process in (worker, web):
                if process.stop() not in (0, -15):
                    print(process.output()[-4000:])
            for user in users:
                user.close()


def test_each_portal_gets_its_own_alerts(two_portals, redis, keys: Keys):
    sim_a, sim_b, sink = two_portals["a"], two_portals["b"], two_portals["sink"]
    user_a, user_b = two_portals["users"]
    task_a = user_a.add_task("Portal A task")
    task_b = user_b.add_task("Portal B task")
    user_a.comment(task_a, "Signed in A", as_result=True)
    user_b.comment(task_b, "Signed in B", as_result=True)
    wait_for(lambda: sim_a.control.messages() and sim_b.control.messages(), 30, "no chat in one of the portals")
    sink.wait_for(2, timeout=30)
    wait_for(lambda: fleet_idle(two_portals["env"]["REDIS_URL"], two_portals["env"]["B24NOTIFY_KEY_PREFIX"]), 30,
             "fleet busy")
    (in_a,), (in_b,) = sim_a.control.messages(), sim_b.control.messages()
    assert "Signed in A" in in_a["message"] and in_a["dialog_id"] == "chat1"
    assert "Signed in B" in in_b["message"] and in_b["dialog_id"] == "chat2"
    mails = {m["To"]: m for m in sink.messages}
    assert set(mails) == {"a-team@example.com", "b-team@example.com"}
    assert "Portal A task" in mails["a-team@example.com"]["Subject"]
    assert "Portal B task" in mails["b-team@example.com"]["Subject"]
    # Each portal was read through its own webhook and paid from its own budget.
    assert sim_a.control.calls()["calls"] and sim_b.control.calls()["calls"]
    assert redis.exists(keys.budget(sim_a.domain)) and redis.exists(keys.budget(sim_b.domain))
    # The operator sees each portal in the metrics.
    metrics = httpx.get(two_portals["web"].replace("/webhooks/bitrix24", "/metrics")).text
    sent = [line for line in metrics.splitlines() if line.startswith("b24notify_notifications")
            and 'outcome="sent"' in line]
    for domain in (sim_a.domain, sim_b.domain):
        assert any(f'portal="{domain}"' in line for line in sent), sent


def test_a_portal_cannot_use_another_portals_token(two_portals, redis, keys: Keys):
    sim_a, sim_b = two_portals["a"], two_portals["b"]

    def post(domain: str, member: str, token: str) -> httpx.Response:
        payload = {"event": "ONTASKUPDATE", "data": {"FIELDS_AFTER": {"ID": 7}},
                   "auth": {"domain": domain, "member_id": member, "application_token": token}}
        return httpx.post(two_portals["web"], content=encode_php_query(payload),
                          headers={"content-type": "application/x-www-form-urlencoded"})

    assert post(sim_b.domain, "member-b", "token-a").status_code == 401
    assert post(sim_a.domain, "member-b", "token-a").status_code == 403  # A's token, B's member id
    assert post("unknown.bitrix24.com", "member-a", "token-a").status_code == 403
    assert redis.zcard(keys.due("tasks")) == 0
    assert post(sim_b.domain, "member-b", "token-b").status_code == 200
    assert redis.zrange(keys.due("tasks"), 0, -1) == [f"{sim_b.domain}|7".encode()]
