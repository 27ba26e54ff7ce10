"""The e-mail channel against a real SMTP server (aiosmtpd, through SmtpSink)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from b24notify.alerts import Alert, sample_alert
from b24notify.channels.base import Channel, DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from b24notify.channels.email import EmailChannel
from b24notify.devtools.smtp_sink import SmtpSink, print_message
from b24notify.diff import ChangeKind
from b24notify.notices import Notice, Target
from b24notify.settings.smtp import SmtpConfig

SENDER = "b24notify <alerts@example.com>"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


def channel_for(sink: SmtpSink) -> EmailChannel:
    return EmailChannel(SmtpConfig.from_url(sink.url), SENDER)


def mail_to(address: str = "team@example.com", *alerts: Alert, user_id: int = 0, language: str = "en") -> Notice:
    return Notice(alerts or (sample_alert(),), Target("email", address, user_id), language)


def content(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert isinstance(part, EmailMessage)
    text = part.get_content()
    assert isinstance(text, str)
    return text


def test_email_channel_is_a_channel(sink: SmtpSink) -> None:
    channel: Channel = channel_for(sink)
    assert channel.name == "email"


def test_a_notice_arrives_at_its_address_as_text_and_html(sink: SmtpSink) -> None:
    notice = mail_to("boss@example.com", sample_alert(text="[B]Signed[/B]", formatted_text="<b>Signed</b>"))
    channel_for(sink).send(notice)

    [message] = sink.wait_for(1)
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Subject"] == "New result in task #8017: Sign the contract"
    assert message["To"] == "boss@example.com"
    assert "Signed" in content(message, "plain")
    assert "<b>Signed</b>" in content(message, "html")


def test_a_digest_in_russian_is_one_mail(sink: SmtpSink) -> None:
    # Needs MailRenderer.render(alerts, language=...) from the render change (helper R).
    channel_for(sink).send(mail_to("anna@example.com", sample_alert(), sample_alert(ChangeKind.CLOSED),
                                   user_id=503, language="ru"))

    [message] = sink.wait_for(1)
    assert "#8017" in message["Subject"] and "задаче" in message["Subject"]
    assert message["To"] == "anna@example.com"


def test_message_id_is_per_notice_and_recipient_so_a_resend_is_recognisable(sink: SmtpSink) -> None:
    channel = channel_for(sink)
    alert = sample_alert()
    channel.send(mail_to("anna@example.com", alert, user_id=503))
    channel.send(mail_to("anna@example.com", alert, user_id=503))  # the same notice again
    channel.send(mail_to("ivan@example.com", alert, user_id=504))  # the same change, someone else
    channel.send(mail_to("anna@example.com", sample_alert(ChangeKind.CLOSED), user_id=503))

    first, again, other_person, other_change = (m["Message-ID"] for m in sink.wait_for(4))
    assert first == again
    assert len({first, other_person, other_change}) == 3


@pytest.mark.parametrize("address", ["anna@example.com\r\nRCPT TO:<b@example.com>", "anna@example.com\n",
                                     "no-at-sign.example.com", "", "anna\x00@example.com"])
def test_an_unusable_address_is_permanent_never_sent_and_never_quoted(sink: SmtpSink, address: str) -> None:
    with pytest.raises(PermanentDeliveryError, match="address of user 503 unusable") as caught:
        channel_for(sink).send(mail_to(address, user_id=503))
    assert address.strip() == "" or address not in caught.value.reason
    assert "\n" not in caught.value.reason and "\r" not in caught.value.reason
    assert sink.messages == []


def test_title_with_line_breaks_injects_no_header(sink: SmtpSink) -> None:
    channel_for(sink).send(mail_to("team@example.com",
                                   sample_alert(title="Hi\r\nBcc: victim@example.com\r\n\r\n<script>x</script>")))

    [message] = sink.wait_for(1)
    assert message["Bcc"] is None
    subject = message["Subject"].strip()  # .strip(): Python's parser keeps the folding space
    assert subject == "New result in task #8017: Hi Bcc: victim@example.com <script>x</script>"
    assert set(message.keys()) <= {"Subject", "From", "To", "Date", "Message-ID", "X-B24Notify-Key",
                                   "Auto-Submitted", "MIME-Version", "Content-Type", "Content-Language"}


def test_hostile_html_never_reaches_the_reader(sink: SmtpSink) -> None:
    hostile = (
        '<b>ok</b><script>alert(1)</script><img src=x onerror="alert(2)">'
        '<a href="javascript:alert(3)">x</a>'
    )
    channel_for(sink).send(mail_to("team@example.com", sample_alert(formatted_text=hostile)))

    html = content(sink.wait_for(1)[0], "html")
    assert "<b>ok</b>" in html
    for fragment in ("<script", "alert(", "<img", "onerror", "javascript:"):
        assert fragment not in html


def test_greylisting_is_retryable_and_the_retry_is_the_same_mail(sink: SmtpSink) -> None:
    channel, notice = channel_for(sink), mail_to()
    sink.refuse_next(1, code=451)

    with pytest.raises(RetryableDeliveryError) as caught:
        channel.send(notice)
    assert caught.value.retryable
    assert "451" in caught.value.reason
    assert sink.messages == []

    channel.send(notice)
    channel.send(notice)  # as if the record of the first had been lost
    first, repeat = sink.wait_for(2)
    assert first["Message-ID"] == repeat["Message-ID"]


def test_unknown_mailbox_is_permanent(sink: SmtpSink) -> None:
    sink.refuse_next(1, code=550)

    with pytest.raises(PermanentDeliveryError) as caught:
        channel_for(sink).send(mail_to())
    assert not caught.value.retryable
    assert "550" in caught.value.reason


@pytest.mark.parametrize(("code", "error"), [(451, RetryableDeliveryError), (554, PermanentDeliveryError)])
def test_message_refused_after_data_is_classified_by_code(
    sink: SmtpSink, code: int, error: type[DeliveryError]
) -> None:
    sink.refuse_next(1, code=code, at="data")

    with pytest.raises(error, match=str(code)):
        channel_for(sink).send(mail_to())


def test_a_refused_recipient_is_permanent_and_the_others_unaffected(
    sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    sink.refuse_address("gone@example.com", code=550)
    channel = channel_for(sink)

    with caplog.at_level(logging.DEBUG, logger="b24notify.channels.email"), \
            pytest.raises(PermanentDeliveryError, match="all recipients refused \\(codes 550\\)"):
        channel.send(mail_to("gone@example.com", user_id=504))
    channel.send(mail_to("team@example.com"))

    assert [m["To"] for m in sink.wait_for(1)] == ["team@example.com"]
    assert not any("gone@example.com" in line for line in caplog.messages)


def test_closed_port_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = EmailChannel(SmtpConfig(host="127.0.0.1", port=port), SENDER)

    with pytest.raises(RetryableDeliveryError, match="ConnectionRefusedError"):
        channel.send(mail_to())


def test_silent_server_times_out_as_retryable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never answers
        cfg = SmtpConfig(host="127.0.0.1", port=silent.getsockname()[1], timeout=0.3)
        with pytest.raises(RetryableDeliveryError, match="timed out"):
            EmailChannel(cfg, SENDER).send(mail_to())


def test_a_send_never_outlasts_the_deadline_it_is_given(sink: SmtpSink) -> None:
    sink.answer_data_after(2.0)  # each reply well inside the 10 s timeout, but the job has 0.5 s left
    started = time.monotonic()
    with pytest.raises(RetryableDeliveryError, match="timed out"):
        channel_for(sink).send(mail_to(), deadline=started + 0.5)
    assert time.monotonic() - started < 1.0


def test_a_slow_server_that_answers_in_time_delivers(sink: SmtpSink) -> None:
    sink.answer_data_after(0.5)
    channel_for(sink).send(mail_to(), deadline=time.monotonic() + 5)
    assert len(sink.wait_for(1)) == 1


def test_server_hanging_up_is_retryable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as rude:
        def hang_up() -> None:
            conn, _ = rude.accept()
            conn.close()

        thread = threading.Thread(target=hang_up)
        thread.start()
        cfg = SmtpConfig(host="127.0.0.1", port=rude.getsockname()[1], timeout=2)
        with pytest.raises(RetryableDeliveryError, match="disconnected"):
            EmailChannel(cfg, SENDER).send(mail_to())
        thread.join(timeout=2)


def test_missing_server_features_are_permanent_and_never_show_the_password(sink: SmtpSink) -> None:
    # The sink speaks neither STARTTLS nor AUTH: a configuration mistake, not a passing problem.
    starttls = SmtpConfig.from_url(f"smtp://127.0.0.1:{sink.port}?starttls=true")
    with pytest.raises(PermanentDeliveryError, match="STARTTLS"):
        EmailChannel(starttls, SENDER).send(mail_to())

    login = SmtpConfig.from_url(f"smtp://alerts:hunter2-secret@127.0.0.1:{sink.port}")
    with pytest.raises(PermanentDeliveryError) as caught:
        EmailChannel(login, SENDER).send(mail_to())
    assert "hunter2-secret" not in str(caught.value)
    assert sink.messages == []


def test_channel_refuses_bad_configuration() -> None:
    cfg = SmtpConfig(host="127.0.0.1", port=25)
    with pytest.raises(ValueError, match="line breaks"):
        EmailChannel(cfg, "a@example.com\r\nRCPT TO:<b@example.com>")


def test_sink_wait_for_gives_up_at_the_deadline(sink: SmtpSink) -> None:
    with pytest.raises(TimeoutError, match="expected 1 messages"):
        sink.wait_for(1, timeout=0.05)


def test_sink_hands_messages_to_the_callback_and_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpSink(on_message=print_message) as sink:
        channel_for(sink).send(mail_to("team@example.com", sample_alert(text="All signed")))
        sink.wait_for(1)

    out = capsys.readouterr().out
    assert "From:    b24notify <alerts@example.com>" in out
    assert "Subject: New result in task #8017: Sign the contract" in out
    assert "All signed" in out
