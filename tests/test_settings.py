"""Configuration: the operator's variables work exactly as documented, and bad values stop the
process with one line naming the variable, never its value."""

import os
import subprocess
import sys

import pytest

from b24notify.portals.spec import require_channels
from b24notify.settings import ConfigError, load_settings, parse_webhook_url

GOOD = {
    "B24_WEBHOOK_URL": "https://acme.bitrix24.com/rest/1/s3cretcode/",
    "B24_APPLICATION_TOKEN": "tok-very-secret",
    "NOTIFY_CHAT": "chat42",
    "NOTIFY_EMAIL": "a@example.com, b@example.com",
    "SMTP_URL": "smtp://mailer:p%40ss@mail.example.com:587?starttls=true",
    "EMAIL_FROM": "b24notify@example.com",
}


@pytest.fixture
def env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("B24", "NOTIFY_", "SMTP_", "EMAIL_", "REDIS_URL")):
            monkeypatch.delenv(name, raising=False)
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_documented_variables_are_read_from_the_environment(env):
    s = load_settings()
    require_channels(s)
    assert s.portal == "acme.bitrix24.com"
    assert s.webhook.portal_url == "https://acme.bitrix24.com"
    assert s.notify_email == ["a@example.com", "b@example.com"]
    assert s.notify_chat == "chat42"
    assert s.channel_names == ("chat", "email")
    assert "s3cretcode" not in repr(s) and "tok-very-secret" not in repr(s)


def test_env_file_is_read_too(env, tmp_path):
    env.delenv("NOTIFY_CHAT")
    path = tmp_path / "b24.env"
    path.write_text("NOTIFY_CHAT=sg7\n")
    assert load_settings(env_file=path).notify_chat == "sg7"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("B24_WEBHOOK_URL", "http://acme.bitrix24.com/rest/1/x/", "https"),
        ("B24_WEBHOOK_URL", "https://acme.bitrix24.com/api/", "path must be /rest/USER_ID/CODE/"),
        ("NOTIFY_CHAT", "general", "DIALOG_ID"),
        ("NOTIFY_EMAIL", "not-an-address", "not an e-mail address"),
        ("SMTP_URL", "ftp://mail.example.com", "SMTP_URL"),
        ("NOTIFY_KINDS", "new,exploded", "not one of"),
        ("B24NOTIFY_DEBOUNCE_SECONDS", "-1", "B24NOTIFY_DEBOUNCE_SECONDS"),
    ],
)
def test_invalid_values_name_the_variable(env, name, value, fragment):
    env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(name) and fragment in message
    assert value not in message or name in ("NOTIFY_EMAIL", "NOTIFY_KINDS")


def test_http_webhook_allowed_for_loopback_only():
    assert parse_webhook_url("http://127.0.0.1:8001/rest/1/code/").netloc == "127.0.0.1:8001"
    assert parse_webhook_url("http://localhost/rest/1/code").base_url == "http://localhost/rest/1/code/"
    with pytest.raises(ValueError):
        parse_webhook_url("http://10.0.0.5/rest/1/code/")


@pytest.mark.parametrize(
    ("missing", "fragment"),
    [("B24_WEBHOOK_URL", "B24_WEBHOOK_URL"), ("B24_APPLICATION_TOKEN", "B24_APPLICATION_TOKEN"),
     ("SMTP_URL", "SMTP_URL"), ("EMAIL_FROM", "EMAIL_FROM")],
)
def test_missing_required_values_are_named(env, missing, fragment):
    env.delenv(missing)
    with pytest.raises(ConfigError, match=fragment):
        require_channels(load_settings())


def test_worker_exits_at_start_with_one_line_naming_the_variable(env):
    env.setenv("B24_WEBHOOK_URL", "https://acme.bitrix24.com/rest/1/s3cretcode")
    env.setenv("SMTP_URL", "smtp://user:hunter2@mail.example.com:99999")
    proc = subprocess.run([sys.executable, "-m", "b24notify.cli", "worker"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("b24notify: config error: SMTP_URL")
    assert "hunter2" not in proc.stderr and "s3cretcode" not in proc.stderr
