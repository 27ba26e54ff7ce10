"""OAuth application mode against the simulator: installs checked with the OAuth server, events
from two portals, a token refresh that exactly one process does, uninstall."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from redis import Redis

from b24notify.devtools.simulator import OAuthAuthority, RunningSimulator, SimulatorConfig
from b24notify.devtools.smtp_sink import SmtpSink
from b24notify.phpform import encode_php_query
from b24notify.portals.registry import AppRegistry
from b24notify.rest.errors import PortalUnusable
from b24notify.workers.context import WorkerContexts
from tests.support.apps import install_directly
from tests.support.portal_user import PortalUser
from tests.support.processes import CliProcess, fleet_idle
from tests.support.servers import CountingListener, answers, free_port, wait_for

CLIENT_ID, CLIENT_SECRET = "app.sim.1", "sim-app-secret"


def refreshes(authority: OAuthAuthority, member_id: str) -> int:
    return sum(1 for r in authority.requests() if r.member_id == member_id and r.outcome == "ok"
               and r.grant_type == "refresh_token")


@pytest.fixture
def authority() -> OAuthAuthority:
    return OAuthAuthority(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


@pytest.fixture
def app_settings(make_settings, authority):
    def build(sim: RunningSimulator, **extra: str):
        return make_settings(b24_client_id=CLIENT_ID, b24_client_secret=CLIENT_SECRET,
                             b24_oauth_url=sim.oauth_url, notify_chat="chat9", **extra)
    return build


def test_expired_token_refreshed_once_by_many_threads(redis, keys, authority, app_settings):
    with RunningSimulator(SimulatorConfig(bucket_capacity=0), authority=authority) as sim:
        settings = app_settings(sim)
        install_directly(redis, keys, sim, authority)
        contexts = [WorkerContexts(settings, Redis.from_url(settings.redis_url)) for _ in range(6)]
        try:
            clients = [c.get(sim.domain) for c in contexts]
            assert all(clients)
            authority.expire_all()
            barrier = threading.Barrier(len(clients))
            errors: list[BaseException] = []

            def call(ctx) -> None:
                barrier.wait()
                try:
                    ctx.client.call("user.get", {"ID": 1})
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=call, args=(ctx,)) for ctx in clients]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert errors == []
            assert refreshes(authority, sim.config.member_id) == 1
            assert not any(r.outcome != "ok" for r in authority.requests())
        finally:
            for c in contexts:
                c.close()


def test_two_worker_processes_hitting_expired_token_refresh_once(redis_url, redis, keys, key_prefix, authority):
    with RunningSimulator(SimulatorConfig(bucket_capacity=0), authority=authority) as sim:
        install_directly(redis, keys, sim, authority)
        authority.expire_all()
        env = {"REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": key_prefix, "B24_CLIENT_ID": CLIENT_ID,
               "B24_CLIENT_SECRET": CLIENT_SECRET, "B24_OAUTH_URL": sim.oauth_url, "NOTIFY_CHAT": "chat9"}
        start_at = time.time() + 3  # both processes are up and connected by then
        procs = [subprocess.Popen([sys.executable, "-m", "tests.support.refresh_probe", sim.domain, str(start_at)],
                                  env={**_clean_env(), **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(2)]
        outputs = [p.communicate(timeout=60)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        assert refreshes(authority, sim.config.member_id) == 1
        stored = AppRegistry(redis, keys).get(sim.domain)
        assert stored is not None
        assert authority.check(stored.access_token).member_id == sim.config.member_id  # the stored pair works


def test_a_refused_refresh_pauses_the_portal(redis, keys, authority, app_settings):
    with RunningSimulator(SimulatorConfig(bucket_capacity=0), authority=authority) as sim:
        settings = app_settings(sim)
        install = install_directly(redis, keys, sim, authority)
        authority.refresh(CLIENT_ID, CLIENT_SECRET, install.refresh_token)  # someone else spent it
        authority.expire_all()
        contexts = WorkerContexts(settings, redis)
        try:
            ctx = contexts.get(sim.domain)
            assert ctx is not None
            with pytest.raises(PortalUnusable) as caught:
                ctx.client.call("user.get", {"ID": 1})
            assert caught.value.code == "invalid_grant"
        finally:
            contexts.close()


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("B24", "NOTIFY_", "SMTP_", "EMAIL_"))}


# -- end to end: install → events from two portals → alerts for both, a refresh in the middle ------


@pytest.fixture
def app_fleet(redis_url, key_prefix, redis, authority) -> Iterator[dict]:
    web_port = free_port()
    public = f"http://127.0.0.1:{web_port}"
    handler = public + "/webhooks/bitrix24"
    config_a = SimulatorConfig(member_id="member-a", app_handler_url=handler)
    config_b = SimulatorConfig(member_id="member-b", app_handler_url=handler)
    with SmtpSink() as sink, RunningSimulator(config_a, authority=authority) as a, \
            RunningSimulator(config_b, authority=authority) as b:
        env = {
            "REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": key_prefix, "B24NOTIFY_QUEUE": f"{key_prefix}-q",
            "B24_CLIENT_ID": CLIENT_ID, "B24_CLIENT_SECRET": CLIENT_SECRET, "B24_OAUTH_URL": a.oauth_url,
            "B24NOTIFY_PUBLIC_URL": public, "NOTIFY_EMAIL": "team@example.com", "SMTP_URL": sink.url,
            "EMAIL_FROM": "b24notify@example.com", "B24NOTIFY_DEBOUNCE_SECONDS": "0.2",
        }
        processes = [CliProcess(["serve", "--port", str(web_port)], env)]
        wait_for(lambda: answers(public + "/readyz"), 20, "web did not start")
        processes += [CliProcess(["worker", "--name", f"{key_prefix}-w{i}"], env) for i in range(2)]
        users = PortalUser(a.webhook_url), PortalUser(b.webhook_url)
        try:
            yield {"a": a, "b": b, "users": users, "sink": sink, "env": env, "web": handler}
        finally:
            for process in processes:
                if process.stop() not in (0, -15):
                    print(process.output()[-4000:])
            for user in users:
                user.close()


def _chat_texts(sim: RunningSimulator) -> list[str]:
    return [str(m["message"]) for m in sim.control.messages()]


def test_install_events_from_two_portals_and_a_refresh_in_the_middle(app_fleet, redis, keys, authority):
    a, b, sink = app_fleet["a"], app_fleet["b"], app_fleet["sink"]
    user_a, user_b = app_fleet["users"]
    for sim in (a, b):
        answer = sim.control.install_app()
        assert answer["delivered"] and answer["status"] == 200, answer
    assert sorted(AppRegistry(redis, keys).portals()) == sorted([a.domain, b.domain])
    # A worker binds the task events on each portal (event.get first; nothing twice).
    for sim in (a, b):
        wait_for(lambda sim=sim: len(sim.control.bindings()) == 7, 30, f"events not bound on {sim.domain}")
    task_a, task_b = user_a.add_task("Task in A"), user_b.add_task("Task in B")
    user_a.comment(task_a, "First result in A", as_result=True)
    user_b.comment(task_b, "First result in B", as_result=True)
    wait_for(lambda: _chat_texts(a) and _chat_texts(b), 30, "no chat alert in one of the portals")
    # Every access token expires: the next calls meet expired_token and refresh, once per portal.
    before = {m: refreshes(authority, m) for m in ("member-a", "member-b")}
    authority.expire_all()
    user_a.comment(task_a, "Second result in A", as_result=True)
    user_b.comment(task_b, "Second result in B", as_result=True)
    wait_for(lambda: len(_chat_texts(a)) >= 2 and len(_chat_texts(b)) >= 2, 30, "no alert after the refresh")
    sink.wait_for(4, timeout=30)
    wait_for(lambda: fleet_idle(app_fleet["env"]["REDIS_URL"], app_fleet["env"]["B24NOTIFY_KEY_PREFIX"]), 30,
             "fleet busy")
    assert {m: refreshes(authority, m) - before[m] for m in before} == {"member-a": 1, "member-b": 1}
    assert not [r for r in authority.requests() if r.outcome != "ok"]
    texts_a, texts_b = _chat_texts(a), _chat_texts(b)
    assert len(texts_a) == 2 and "First result in A" in texts_a[0] and "Second result in A" in texts_a[1]
    assert len(texts_b) == 2 and "First result in B" in texts_b[0] and "Second result in B" in texts_b[1]
    assert all(m["dialog_id"] == "1" for sim in (a, b) for m in sim.control.messages())  # the installer
    subjects = Counter(str(m["Subject"]) for m in sink.messages)
    assert subjects == Counter({f"New result in task #{task_a}: Task in A": 2,
                                f"New result in task #{task_b}: Task in B": 2})
    # Uninstall A: forgotten; its app token no longer opens the door.
    app_token_a = redis.hget(keys.app_install(a.domain), "application_token")
    assert a.control.uninstall_app()["delivered"]
    assert AppRegistry(redis, keys).portals() == [b.domain]
    forged = {"event": "ONTASKUPDATE", "data": {"FIELDS_AFTER": {"ID": task_a}},
              "auth": {"domain": a.domain, "member_id": "member-a", "application_token": app_token_a.decode()}}
    response = httpx.post(app_fleet["web"], content=encode_php_query(forged),
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 403


def test_a_forged_install_changes_nothing_and_calls_nobody(app_fleet, redis, keys, authority):
    a = app_fleet["a"]
    listener = CountingListener()
    try:
        def install(**auth: str) -> httpx.Response:
            fields = {"domain": a.domain, "member_id": "member-a", "client_endpoint": a.client_endpoint,
                      "application_token": "forged-token", "refresh_token": "not-a-real-token",
                      "access_token": "x", "user_id": "1"}
            fields.update(auth)
            payload = {"event": "ONAPPINSTALL", "data": {"VERSION": "1"}, "auth": fields}
            return httpx.post(app_fleet["web"], content=encode_php_query(payload),
                              headers={"content-type": "application/x-www-form-urlencoded"})

        refused = install()
        assert refused.status_code == 403 and refused.json()["reason"] == "install_unverified"
        elsewhere = install(client_endpoint=f"http://{listener.host}/rest/")
        assert elsewhere.status_code == 403 and elsewhere.json()["reason"] == "install_refused"
        # A real refresh token of portal A, but the install claims portal A lives at the listener.
        tokens = authority.issue("member-a", a.domain, a.client_endpoint, 1)
        hijack = install(domain=listener.host, client_endpoint=f"http://{listener.host}/rest/",
                         refresh_token=tokens["refresh_token"])
        assert hijack.status_code == 403
        assert listener.hits == 0
        assert AppRegistry(redis, keys).portals() == []
    finally:
        listener.close()


def test_register_binds_the_task_events_once(redis, keys, authority, app_settings):
    from b24notify.register import register_all

    with RunningSimulator(SimulatorConfig(bucket_capacity=0), authority=authority) as sim:
        settings = app_settings(sim, b24notify_public_url="https://notify.example.com")
        sim.control.install_app()  # the app exists on the portal (no handler to tell: tokens made below)
        install_directly(redis, keys, sim, authority)
        lines: list[str] = []
        assert register_all(settings, lines.append) == 0
        handler = "https://notify.example.com/webhooks/bitrix24"
        bound = sim.control.bindings()
        assert sorted(b["event"] for b in bound) == sorted(
            ["ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE", "ONTASKCOMMENTADD", "ONTASKCOMMENTUPDATE",
             "ONTASKCOMMENTDELETE", "ONAPPUNINSTALL"])
        assert all(b["handler"] == handler for b in bound)
        binds_before = len(sim.control.calls("event.bind")["calls"])
        lines.clear()
        assert register_all(settings, lines.append) == 0  # again: event.get, nothing to bind
        assert len(sim.control.bindings()) == 7
        assert len(sim.control.calls("event.bind")["calls"]) == binds_before
        assert "bound nothing new" in lines[0]


def test_register_in_webhook_mode_prints_the_setup_steps(make_settings, simulator):
    from b24notify.register import register_all

    settings = make_settings(b24_webhook_url=simulator.webhook_url, b24_application_token="t",
                             notify_chat="chat1", b24notify_public_url="https://notify.example.com")
    lines: list[str] = []
    assert register_all(settings, lines.append) == 0
    assert "Handler URL: https://notify.example.com/webhooks/bitrix24" in lines[0]
    assert simulator.webhook_url.split("/rest/")[1] not in lines[0]  # the webhook code stays secret


def test_register_runs_with_only_the_webhook_url(make_settings, monkeypatch, capsys):
    """A new user runs `register` to learn where the application token comes from: it must not
    refuse for want of that token. serve and worker still do."""
    from b24notify.cli import main
    from b24notify.settings import ConfigError, load_settings

    make_settings()  # a clean environment
    monkeypatch.setenv("B24_WEBHOOK_URL", "https://acme.bitrix24.com/rest/1/secretcode/")
    assert main(["register"]) == 0
    out = capsys.readouterr().out
    assert "Handler URL: https://YOUR-HOST/webhooks/bitrix24" in out
    assert "B24_APPLICATION_TOKEN is not set yet" in out
    assert "secretcode" not in out
    with pytest.raises(ConfigError, match="B24_APPLICATION_TOKEN"):
        load_settings().require_portal()


def test_work_queued_for_an_uninstalled_portal_is_dropped(redis, keys, authority, app_settings):
    from b24notify.keys import task_member
    from b24notify.workers.context import bind_contexts, unbind_contexts
    from b24notify.workers.jobs import run_sync

    with RunningSimulator(SimulatorConfig(bucket_capacity=0), authority=authority) as sim:
        settings = app_settings(sim)
        install_directly(redis, keys, sim, authority)
        contexts = WorkerContexts(settings, redis)
        contexts.tasks.schedule(task_member(sim.domain, 5), at=0)
        claims = contexts.tasks.claim(10, 60)
        AppRegistry(redis, keys).remove(sim.domain)  # ONAPPUNINSTALL arrived meanwhile
        fresh = WorkerContexts(settings, redis)
        token = bind_contexts(fresh)
        try:
            assert run_sync([[c.member, c.token] for c in claims]) == ["stale"]
        finally:
            unbind_contexts(token)
            contexts.close()
            fresh.close()
        assert redis.zcard(keys.due("tasks")) == 0 and redis.zcard(keys.lease("tasks")) == 0
        assert sim.control.calls()["calls"] == []  # nobody called the portal that left


def test_doctor_checks_every_installed_portal(redis, keys, authority, app_settings):
    from b24notify.doctor import run_doctor

    with RunningSimulator(SimulatorConfig(bucket_capacity=0), authority=authority) as sim:
        settings = app_settings(sim)
        lines: list[str] = []
        assert run_doctor(settings, lines.append) == 1
        assert any(line.startswith("FAIL") and "nobody installed it yet" in line for line in lines)
        install_directly(redis, keys, sim, authority)
        lines.clear()
        assert run_doctor(settings, lines.append) == 0, lines
        assert any(sim.domain in line and "calls allowed" in line for line in lines)
        redis.set(keys.halted(sim.domain), "oauth.token invalid_grant (HTTP 400)")
        lines.clear()
        assert run_doctor(settings, lines.append) == 1
        assert any("calls paused: oauth.token invalid_grant" in line for line in lines)
