"""SMTP_URL parsing: what it accepts, what it refuses, and that the password never shows."""

from __future__ import annotations

import pytest

from b24notify.channels.email import EmailChannel
from b24notify.settings.smtp import SmtpConfig

SECRET = "s3cr3t/p@ss:word"
SECRET_QUOTED = "s3cr3t%2Fp%40ss%3Aword"


def test_plain_smtp_with_defaults() -> None:
    cfg = SmtpConfig.from_url("smtp://mail.example.com")
    assert cfg == SmtpConfig(host="mail.example.com", port=25)
    assert cfg.redacted_url() == "smtp://mail.example.com:25"


def test_smtp_with_starttls_and_credentials() -> None:
    cfg = SmtpConfig.from_url(f"smtp://alerts%40acme.example:{SECRET_QUOTED}@mail.example.com:587?starttls=true")

    assert (cfg.host, cfg.port, cfg.use_ssl, cfg.starttls) == ("mail.example.com", 587, False, True)
    assert cfg.username == "alerts@acme.example"
    assert cfg.password == SECRET
    assert cfg.redacted_url() == "smtp://alerts%40acme.example:***@mail.example.com:587?starttls=true"


def test_reply_timeout_can_be_set_and_bounds_a_whole_send() -> None:
    cfg = SmtpConfig.from_url("smtp://mail.example.com:587?starttls=true&timeout=2.5")
    assert cfg.timeout == 2.5
    assert cfg.redacted_url() == "smtp://mail.example.com:587?starttls=true&timeout=2.5"
    assert EmailChannel(cfg, "a@example.com").send_seconds == 5.0
    assert SmtpConfig.from_url("smtp://mail.example.com").timeout == 10.0


@pytest.mark.parametrize("value", ["0", "-1", "soon", "301", "nan"])
def test_a_reply_timeout_that_is_no_number_of_seconds_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="timeout must be seconds"):
        SmtpConfig.from_url(f"smtp://mail.example.com?timeout={value}")


def test_smtps_defaults_to_port_465() -> None:
    cfg = SmtpConfig.from_url("SMTPS://u:p@mail.example.com")
    assert (cfg.port, cfg.use_ssl, cfg.starttls) == (465, True, False)


def test_password_is_not_in_repr() -> None:
    cfg = SmtpConfig.from_url(f"smtp://user:{SECRET_QUOTED}@mail.example.com")
    assert SECRET not in repr(cfg)
    assert SECRET_QUOTED not in repr(cfg)
    assert SECRET not in cfg.redacted_url()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://user:{pw}@mail.example.com", "smtp:// or smtps://"),
        ("user:{pw}@mail.example.com", "smtp:// or smtps://"),
        ("smtp://user:{pw}@", "no host"),
        ("smtp://user:{pw}@mail.example.com:notaport", "not a valid URL"),
        ("smtp://user:{pw}@mail.example.com:99999", "not a valid URL"),
        ("smtp://user:{pw}@[::1", "not a valid URL"),
        ("smtp://user:{pw}@mail.example.com/path", "path"),
        ("smtp://user:{pw}@mail.example.com?starttls=maybe", "starttls must be true or false"),
        ("smtp://user:{pw}@mail.example.com?password={pw}", "unknown parameter 'password'"),
        ("smtps://user:{pw}@mail.example.com?starttls=true", "already TLS"),
        ("smtp://:{pw}@mail.example.com", "both a user name and a password"),
        ("smtp://user@mail.example.com", "both a user name and a password"),
        ("smtp://user:{pw}@mail.example.com\uff03x", "not a valid URL"),
    ],
)
def test_bad_urls_are_refused_without_showing_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        SmtpConfig.from_url(url.format(pw=SECRET_QUOTED))

    shown = str(caught.value) + repr(caught.value)
    assert SECRET_QUOTED not in shown and SECRET not in shown
    # No chained exception either: urlsplit's own messages can quote the whole netloc.
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
