"""The operator console's guards, through the real ASGI app and a real Redis: off without a
password, nothing reachable without a session (every route, found by enumerating the app), CSRF
on every POST, the login rate limit shared by web processes, the cookie's flags, no secret of the
settings on any page, and ``b24notify console hash-password``."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from b24notify.cli import main
from b24notify.console.auth import COOKIE, Session, SessionCodec
from b24notify.console.ratelimit import BLOCK_SECONDS, MAX_FAILURES, WINDOW_SECONDS
from b24notify.console.routes import safe_next
from b24notify.keys import TASKS, task_member
from b24notify.service.app import create_app
from b24notify.settings import ConfigError
from b24notify.settings.console import PBKDF2_ITERATIONS, PasswordHash, hash_password
from b24notify.trace import TraceLog, delivery_step, sync_step

PASSWORD = "correct horse battery staple"
WEBHOOK_CODE = "w3bh00kS3cretCode"
APP_TOKEN = "appT0kenS3cret42xyz"
SMTP_PASSWORD = "smtpPa55wordS3cret"
APPRISE_TOKEN = "appriseT0kenS3cret"
METRICS_TOKEN = "metricsT0kenS3cret"
PORTAL = "acme.bitrix24.com"
WEBHOOK_URL = f"https://{PORTAL}/rest/1/{WEBHOOK_CODE}/"
SECRETS = (WEBHOOK_CODE, APP_TOKEN, SMTP_PASSWORD, APPRISE_TOKEN, METRICS_TOKEN, PASSWORD)
CONTRACT = {"/console", "/console/login", "/console/trace", "/console/deadletters", "/console/alerts"}


@pytest.fixture
def console_settings(make_settings, tmp_path):
    config = tmp_path / "b24notify.toml"
    config.write_text(f'[[routes]]\nto = ["apprise:json://hooks.example.com/{APPRISE_TOKEN}"]\n', encoding="utf-8")

    def build(**overrides):
        values = dict(
            b24_webhook_url=WEBHOOK_URL, b24_application_token=APP_TOKEN, notify_chat="chat42",
            notify_email="team@example.com", smtp_url=f"smtp://bot:{SMTP_PASSWORD}@127.0.0.1:2525",
            email_from="b24notify@example.com", b24notify_config=str(config),
            b24notify_metrics_token=METRICS_TOKEN, b24notify_console_password=PASSWORD,
        )
        values.update(overrides)
        return make_settings(**values)

    return build


@pytest.fixture
def app(console_settings, redis) -> Starlette:
    return create_app(console_settings())


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match[1]


def log_in(client: TestClient, password: str = PASSWORD, next_: str = "/console"):
    form = client.get("/console/login")
    assert form.status_code == 200
    return client.post("/console/login", data={"csrf": csrf_of(form.text), "password": password, "next": next_},
                       follow_redirects=False)


def console_routes(app: Starlette) -> list[tuple[str, str]]:
    """Every (path, method) the app serves under /console: a route added later is tested too."""
    found = []
    for route in app.routes:
        if isinstance(route, Route) and route.path.startswith("/console"):
            found += [(route.path, method) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


def test_without_a_password_every_console_address_is_unknown(make_settings, redis):
    settings = make_settings(b24_webhook_url=WEBHOOK_URL, b24_application_token=APP_TOKEN, notify_chat="chat42")
    assert not settings.console_enabled
    app = create_app(settings)
    assert console_routes(app) == []
    with TestClient(app) as client:
        for path in (*sorted(CONTRACT), "/console/", "/console/deadletters/replay", "/console/logout"):
            assert client.get(path, follow_redirects=False).status_code == 404, path
            assert client.post(path, data={"csrf": "x"}, follow_redirects=False).status_code in (404, 405), path
        assert client.get("/healthz").status_code == 200


def test_every_console_route_without_a_session_goes_to_the_login(app, client):
    routes = console_routes(app)
    assert {path for path, _ in routes} >= CONTRACT
    assert any(method == "POST" and path != "/console/login" for path, method in routes)
    visitor = client.get("/console/login")  # a visitor's session (not logged in) is no better
    forged = Session.fresh(user=True)
    for cookies in ({}, {COOKIE: visitor.cookies[COOKIE]}, {COOKIE: SessionCodec(b"x" * 32).dumps(forged)},
                    {COOKIE: "v1.e30.AAAA"}):
        client.cookies.clear()
        for name, value in cookies.items():
            client.cookies.set(name, value, path="/console")
        for path, method in routes:
            if path == "/console/login":
                continue
            if method == "GET":
                answer = client.get(path, params={"task": "1"}, follow_redirects=False)
                assert answer.status_code == 303, (path, cookies)
                assert answer.headers["location"].startswith("/console/login?next=%2Fconsole")
            else:
                answer = client.post(path, data={"csrf": "whatever", "id": "x"}, follow_redirects=False)
                assert answer.status_code == 401, (path, method, cookies)
    # After logging in, the same addresses answer.
    client.cookies.clear()
    assert log_in(client).status_code == 303
    for path, method in routes:
        if method == "GET" and path != "/console/login":
            assert client.get(path).status_code == 200, path


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(client, redis, keys):
    delivery = f"{PORTAL}:7:r1:new|chat:chat42"
    redis.hset(keys.delivery(delivery), mapping={"channel": "chat", "status": "dead", "attempts": 5,
                                                 "last_error": "ACCESS_DENIED"})
    redis.zadd(keys.deadletter(), {delivery: time.time()})
    # The login form's token is checked too: no session is made without it.
    client.get("/console/login")
    answer = client.post("/console/login", data={"password": PASSWORD}, follow_redirects=False)
    assert answer.status_code == 403
    assert client.get("/console", follow_redirects=False).status_code == 303
    assert log_in(client).status_code == 303
    for data in ({"id": delivery}, {"id": delivery, "csrf": "not-the-token"}, {"id": delivery, "csrf": ""}):
        answer = client.post("/console/deadletters/replay", data=data, follow_redirects=False)
        assert answer.status_code == 403, data
        answer = client.post("/console/deadletters/replay-all", data={**data, "confirm": "1"}, follow_redirects=False)
        assert answer.status_code == 403, data
    assert redis.zscore(keys.deadletter(), delivery) is not None  # still dead, nothing queued
    assert redis.zcard(keys.due("deliveries")) == 0
    assert client.post("/console/logout", data={}, follow_redirects=False).status_code == 403
    assert client.get("/console", follow_redirects=False).status_code == 200  # still logged in
    # A JSON body is not a form: refused the same way.
    page = client.get("/console/deadletters")
    answer = client.post("/console/deadletters/replay", json={"id": delivery, "csrf": csrf_of(page.text)},
                         follow_redirects=False)
    assert answer.status_code == 403
    # With the token, it goes through.
    answer = client.post("/console/deadletters/replay", data={"id": delivery, "csrf": csrf_of(page.text)},
                         follow_redirects=False)
    assert answer.status_code == 303
    assert redis.zscore(keys.deadletter(), delivery) is None


def test_ten_wrong_passwords_refuse_the_address_even_the_right_password(app, console_settings, redis, keys):
    with TestClient(app, client=("203.0.113.7", 40000)) as attacker:
        for attempt in range(MAX_FAILURES):
            answer = log_in(attacker, password=f"wrong password {attempt}")
            assert answer.status_code == 401, attempt
            assert "Wrong password." in answer.text
        refused = log_in(attacker)  # the right one
        assert refused.status_code == 429
        assert 0 < int(refused.headers["retry-after"]) <= BLOCK_SECONDS
        assert "Too many wrong passwords" in refused.text
        assert COOKIE not in refused.cookies or refused.cookies[COOKIE] == attacker.cookies.get(COOKIE)
        assert attacker.get("/console", follow_redirects=False).status_code == 303
    # The state is in Redis, with TTLs: another web process refuses the address too.
    blocked = redis.ttl(f"{keys.prefix}:console:login:blocked:203.0.113.7")
    assert 0 < blocked <= BLOCK_SECONDS
    with TestClient(create_app(console_settings()), client=("203.0.113.7", 40001)) as other_process:
        assert log_in(other_process).status_code == 429
    # Another address is not affected.
    with TestClient(app, client=("198.51.100.2", 40000)) as colleague:
        assert log_in(colleague).status_code == 303
        assert colleague.get("/console").status_code == 200


def test_failures_are_forgotten_after_a_right_password_and_expire(client, redis, keys):
    for attempt in range(MAX_FAILURES - 1):
        assert log_in(client, password=f"wrong {attempt}").status_code == 401
    failures = f"{keys.prefix}:console:login:failures:testclient"
    assert redis.zcard(failures) == MAX_FAILURES - 1
    assert 0 < redis.ttl(failures) <= WINDOW_SECONDS
    assert log_in(client).status_code == 303
    assert redis.exists(failures) == 0


def test_the_session_cookie_is_httponly_samesite_and_secure_over_https(app, console_settings, redis):
    def cookie_of(answer) -> str:
        (header,) = [v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith(COOKIE)]
        return header.lower()

    with TestClient(app) as plain:
        header = cookie_of(log_in(plain))
        assert "httponly" in header and "samesite=lax" in header and "path=/console" in header
        assert "secure" not in header
        assert 0 < int(re.search(r"max-age=(\d+)", header)[1]) <= 12 * 3600
    with TestClient(app, base_url="https://testserver") as tls:
        answer = log_in(tls)
        assert answer.status_code == 303
        header = cookie_of(answer)
        assert "secure" in header and "httponly" in header and "samesite=lax" in header
        assert tls.get("/console").status_code == 200
    # Behind a TLS proxy that does not say so, B24NOTIFY_PUBLIC_URL=https://… still makes it Secure.
    with TestClient(create_app(console_settings(b24notify_public_url="https://notify.example.com"))) as proxied:
        assert "secure" in cookie_of(proxied.get("/console/login"))


def test_a_session_is_signed_and_expires_after_twelve_hours():
    codec = SessionCodec(b"k" * 32)
    now = time.time()
    session = Session.fresh(user=True, now=now)
    cookie = codec.dumps(session)
    assert codec.loads(cookie, now=now + 3600) == session
    assert codec.loads(cookie, now=now + 12 * 3600 + 1) is None
    assert SessionCodec(b"other key" * 4).loads(cookie, now=now) is None
    version, payload, signature = cookie.split(".")
    assert codec.loads(f"{version}.{payload}x.{signature}", now=now) is None
    assert codec.loads("garbage", now=now) is None


def test_no_secret_of_the_settings_reaches_any_page(app, client, redis, keys):
    # Data as the workers leave it, including an error message that quotes secrets verbatim.
    leaky = f"POST {WEBHOOK_URL}im.message.add failed; smtp login {SMTP_PASSWORD} refused"
    delivery = f"{PORTAL}:7:r1:new|chat:chat42"
    redis.hset(keys.delivery(delivery), mapping={"channel": "chat", "status": "dead", "attempts": 5,
                                                 "last_error": leaky})
    redis.zadd(keys.deadletter(), {delivery: time.time()})
    redis.set(keys.halted(PORTAL), f"tasks.task.get ACCESS_DENIED via {WEBHOOK_URL}", ex=300)
    redis.zadd(keys.due(TASKS), {task_member(PORTAL, 7): time.time() - 5})
    TraceLog(redis, keys).record(PORTAL, [
        sync_step(7, trigger="event", requests=1, job=1, outcome="synced", changes={"new": [11]}, queued=1),
        delivery_step(7, delivery=delivery, recipient="chat:chat42", channel="chat", attempt=5, outcome="dead",
                      results=[11], error=leaky),
    ])
    pages = [client.get("/console/login"), log_in(client)]
    for path, method in console_routes(app):
        if method == "GET":
            for params in ({}, {"task": "7"}, {"result": "11"}, {"reason": "smtp"}, {"lang": "ru"}, {"lang": "en"}):
                pages.append(client.get(path, params=params))
    token = csrf_of(pages[-1].text)
    pages.append(client.post("/console/deadletters/replay-all", data={"csrf": token, "channel": "chat"}))
    pages.append(client.post("/console/deadletters/replay", data={"csrf": "wrong"}))
    assert pages[-2].status_code == 200 and 'data-count="1"' in pages[-2].text
    rendered = "\n".join(f"{answer.headers}\n{answer.text}" for answer in pages)
    for secret in SECRETS:
        assert secret not in rendered, secret
    # The data did reach the pages, with the secrets masked.
    assert "im.message.add failed; smtp login *** refused" in rendered
    assert "tasks.task.get ACCESS_DENIED via ***" in rendered
    assert "dead" in rendered and "chat:chat42" in rendered


def test_login_sends_back_only_to_a_console_page(client):
    assert log_in(client, next_="/console/trace?task=5").headers["location"] == "/console/trace?task=5"
    client.cookies.clear()
    assert log_in(client, next_="https://evil.example/console").headers["location"] == "/console"
    for target in ("//evil.example/console", "/console/../healthz", "/consolex", "/console\\@evil", ""):
        assert safe_next(target) == "/console", target


def test_logout_ends_the_session(client):
    assert log_in(client).status_code == 303
    page = client.get("/console")
    answer = client.post("/console/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_hash_password_prints_a_hash_the_console_accepts(console_settings, redis, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("another long passphrase\n"))
    assert main(["console", "hash-password"]) == 0
    printed = capsys.readouterr().out.strip()
    parsed = PasswordHash.parse(printed)
    assert printed.startswith(f"pbkdf2_sha256${PBKDF2_ITERATIONS}$")
    assert parsed.params[0] >= 600_000 and len(parsed.salt) >= 16
    assert parsed.matches("another long passphrase") and not parsed.matches("another long passphrasE")
    assert hash_password("another long passphrase") != printed  # a random salt each time
    settings = console_settings(b24notify_console_password=None, b24notify_console_password_hash=printed)
    assert settings.console_enabled
    with TestClient(create_app(settings)) as client:
        assert log_in(client, password="another long passphrase").status_code == 303
        client.cookies.clear()
        assert log_in(client, password=PASSWORD).status_code == 401
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["console", "hash-password"]) == 2
    assert "at least 12 characters" in capsys.readouterr().err


def test_console_settings_are_checked_and_never_echoed(console_settings):
    with pytest.raises(ConfigError, match="both set"):
        console_settings(b24notify_console_password_hash=hash_password(PASSWORD, iterations=PBKDF2_ITERATIONS))
    with pytest.raises(ConfigError) as bad_hash:
        console_settings(b24notify_console_password=None, b24notify_console_password_hash="md5$abc$NotSecret1")
    assert bad_hash.value.args[0].startswith("B24NOTIFY_CONSOLE_PASSWORD_HASH:")
    assert "NotSecret1" not in str(bad_hash.value)
    weak = f"pbkdf2_sha256$1000${'A' * 22}${'B' * 43}"
    with pytest.raises(ConfigError, match="fewer than 600000 iterations"):
        console_settings(b24notify_console_password=None, b24notify_console_password_hash=weak)
    with pytest.raises(ConfigError, match="B24NOTIFY_CONSOLE_PASSWORD: must be at least 12") as short:
        console_settings(b24notify_console_password="hunter2")
    assert "hunter2" not in str(short.value)
    with pytest.raises(ConfigError, match="B24NOTIFY_CONSOLE_SECRET: must be at least 32"):
        console_settings(b24notify_console_secret="tooShort")
    settings = console_settings()
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())
    # The derived session key is stable across processes, and a set secret replaces it.
    assert settings.console_session_key() == console_settings().console_session_key()
    changed = console_settings(b24notify_console_password="another long one")
    assert settings.console_session_key() != changed.console_session_key()
    assert console_settings(b24notify_console_secret="s" * 40).console_session_key() == b"s" * 40


def test_pages_carry_no_cache_and_no_framing_headers(client):
    log_in(client)
    answer = client.get("/console")
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "<script" not in answer.text  # no script at all: the CSP allows none
