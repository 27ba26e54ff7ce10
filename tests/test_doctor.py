"""`b24notify doctor` checks what alerts need before the first one is due: the webhook's scopes
(task, user, and im for the chat channel) and the SMTP server (a real login and NOOP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from b24notify.doctor import run_doctor
from tests.support.servers import free_port

PASSWORD = "s3cret-Pa55"


def doctor(settings) -> tuple[int, list[str]]:
    lines: list[str] = []
    return run_doctor(settings, lines.append), lines


def line_for(lines: list[str], name: str) -> str:
    found = [line for line in lines if line[6:].startswith(name)]
    assert found, (name, lines)
    return found[0]


def test_doctor_checks_the_im_scope_for_the_chat_channel(settings, simulator):
    code, lines = doctor(settings)
    assert code == 0, lines
    assert line_for(lines, "  scope im").startswith("ok")
    simulator.control.add_faults({"method": "im.dialog.messages.get", "error": "insufficient_scope"})
    code, lines = doctor(settings)
    assert code == 1, lines
    im = line_for(lines, "  scope im")
    assert im.startswith("FAIL") and "insufficient_scope" in im
    assert line_for(lines, "  scope task").startswith("ok")


def test_doctor_checks_the_smtp_server_answers(make_settings, simulator, sink):
    base = dict(b24_webhook_url=simulator.webhook_url, b24_application_token="t", notify_chat="chat1",
                notify_email="team@example.com", email_from="b24notify@example.com")
    code, lines = doctor(make_settings(smtp_url=sink.url, **base))
    assert code == 0, lines
    assert line_for(lines, "smtp").startswith("ok")
    code, lines = doctor(make_settings(smtp_url=f"smtp://127.0.0.1:{free_port()}", **base))
    assert code == 1
    assert line_for(lines, "smtp").startswith("FAIL") and "connection failed" in line_for(lines, "smtp")
    assert sink.messages == []  # a check, not a mail


class _Accept:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


@pytest.fixture
def smtp_with_login() -> Iterator[str]:
    def authenticate(server: object, session: object, envelope: object, mechanism: str, data: object) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"alerts" and data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)  # aiosmtpd then answers 235 or 535 itself

    port = free_port()
    controller = Controller(_Accept(), hostname="127.0.0.1", port=port, authenticator=authenticate,
                            auth_require_tls=False)
    controller.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        controller.stop()


def test_doctor_logs_in_to_smtp_and_never_prints_the_password(make_settings, simulator, smtp_with_login):
    base = dict(b24_webhook_url=simulator.webhook_url, b24_application_token="t", notify_chat="chat1",
                notify_email="team@example.com", email_from="b24notify@example.com")
    code, lines = doctor(make_settings(smtp_url=f"smtp://alerts:{PASSWORD}@{smtp_with_login}", **base))
    assert code == 0, lines
    assert "accepts our login" in line_for(lines, "smtp")
    code, lines = doctor(make_settings(smtp_url=f"smtp://alerts:wrong-{PASSWORD}@{smtp_with_login}", **base))
    assert code == 1
    smtp = line_for(lines, "smtp")
    assert smtp.startswith("FAIL") and "535" in smtp, smtp
    assert all(PASSWORD not in line for line in lines)


def test_doctor_names_the_redis_version_it_needs(settings):
    from b24notify.doctor import redis_version_ok

    code, lines = doctor(settings)
    assert code == 0 and "version" in line_for(lines, "redis"), lines
    assert [redis_version_ok(v) for v in ("6.0.16", "6.2.0", "7.0.15", "10.1.2", "5.0.7")] == [
        False, True, True, True, False]
