"""The Apprise channel against a real loopback HTTP server receiving Apprise's ``json://`` posts."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

from b24notify.alerts import sample_alert
from b24notify.channels.apprise import AppriseChannel, is_usable
from b24notify.channels.base import Channel, DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from b24notify.diff import ChangeKind
from b24notify.notices import Notice, Target, apprise_id
from b24notify.render.email import subject
from tests.support.hooks import SECRET, HookSink


@pytest.fixture
def hook() -> Iterator[HookSink]:
    sink = HookSink()
    yield sink
    sink.close()


def notice_for(url: str, *kinds: ChangeKind, language: str = "en") -> Notice:
    alerts = tuple(sample_alert(kind, text="[B]Signed[/B] by [USER=7]Anna[/USER]") for kind in kinds or
                   (ChangeKind.NEW,))
    return Notice(alerts, Target("apprise", apprise_id(url)), language)


def assert_no_url(error: DeliveryError, url: str) -> None:
    shown = f"{error} {error!r} {error.reason}"
    assert url not in shown and SECRET not in shown and "127.0.0.1" not in shown
    assert error.__cause__ is None  # nothing chained that could quote it


def test_apprise_channel_is_a_channel(hook: HookSink) -> None:
    channel: Channel = AppriseChannel.from_urls([hook.url()], timeout=3)
    assert channel.name == "apprise" and channel.send_seconds == 3
    assert SECRET not in repr(channel)
    assert not hasattr(channel, "find_posted")


def test_the_notice_arrives_as_plain_text(hook: HookSink, caplog: pytest.LogCaptureFixture) -> None:
    url = hook.url()
    notice = notice_for(url)
    with caplog.at_level(logging.DEBUG):
        AppriseChannel({apprise_id(url): url}).send(notice)
    assert SECRET not in caplog.text  # Apprise's DEBUG lines quote the request URL: dropped

    [(path, payload)] = hook.posts
    assert path == f"/hook/{SECRET}"
    assert payload["title"] == subject(notice.alerts, "en")
    body = payload["message"]
    assert "Signed by Anna" in body
    assert "https://acme.bitrix24.com/company/personal/user/503/tasks/task/view/8017/" in body
    assert "[" not in body and "\u200b" not in body  # no BBCode, no neutralizer marks
    assert payload["type"] == "info"


def test_a_digest_in_russian(hook: HookSink) -> None:
    # Needs MailRenderer.render(alerts, language=...) from the render change (helper R).
    url = hook.url()
    notice = notice_for(url, ChangeKind.NEW, ChangeKind.CLOSED, language="ru")
    AppriseChannel.from_urls([url]).send(notice)

    [(_, payload)] = hook.posts
    assert payload["title"] == subject(notice.alerts, "ru") and "задаче" in payload["title"]


def test_a_refusal_is_retryable_and_names_the_service_not_the_url(
        hook: HookSink, caplog: pytest.LogCaptureFixture) -> None:
    hook.status = 500
    url = hook.url()
    with caplog.at_level(logging.WARNING), pytest.raises(RetryableDeliveryError) as caught:
        AppriseChannel.from_urls([url]).send(notice_for(url))

    assert "JSON" in caught.value.reason and not caught.value.uncertain
    assert_no_url(caught.value, url)
    assert f"target={apprise_id(url)}" in caplog.text
    # Nothing logged at WARNING or above, ours or Apprise's, holds the secret.
    assert SECRET not in caplog.text
    assert len(hook.posts) == 1


def test_an_unknown_fingerprint_is_permanent_and_sends_nothing(hook: HookSink) -> None:
    configured, removed = hook.url(), hook.url("?format=text")
    with pytest.raises(PermanentDeliveryError, match="no longer configured") as caught:
        AppriseChannel.from_urls([configured]).send(notice_for(removed))
    assert_no_url(caught.value, removed)
    assert hook.posts == []


def test_a_malformed_fingerprint_is_not_echoed() -> None:
    bad = Notice((sample_alert(),), Target("apprise", "x\r\nevent=forged"))
    with pytest.raises(PermanentDeliveryError) as caught:
        AppriseChannel({}).send(bad)
    assert "forged" not in caught.value.reason and "\n" not in caught.value.reason


@pytest.mark.parametrize("url", [f"nosuchservice://{SECRET}@example.com/",
                                 f"dingtalk://{SECRET}!/"])  # a token the plugin refuses (Apprise quotes it)
def test_a_url_no_plugin_understands_is_permanent_and_never_logged(
        url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert not is_usable(url)
        with pytest.raises(PermanentDeliveryError, match="no Apprise plugin understands") as caught:
            AppriseChannel.from_urls([url]).send(notice_for(url))
    assert_no_url(caught.value, url)
    assert SECRET not in caplog.text


def test_apprise_is_quiet_only_in_our_threads_and_only_meanwhile(caplog: pytest.LogCaptureFixture) -> None:
    # The filter that keeps URLs out of the log is gone once the channel is done with Apprise.
    assert not is_usable(f"nosuchservice://{SECRET}@example.com/")
    with caplog.at_level(logging.DEBUG, logger="apprise"):
        logging.getLogger("apprise").debug("after")
    assert caplog.messages == ["after"]


def test_a_closed_port_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"json://127.0.0.1:{port}/hook/{SECRET}"
    assert is_usable(url)
    with pytest.raises(RetryableDeliveryError) as caught:
        AppriseChannel.from_urls([url], timeout=2).send(notice_for(url))
    assert_no_url(caught.value, url)


def test_a_silent_service_is_cut_at_the_timeout_even_with_retries(hook: HookSink) -> None:
    hook.silent = True
    url = hook.url("?retry=3")  # four attempts of the plugin's own: the channel's bound still holds
    started = time.monotonic()
    with pytest.raises(RetryableDeliveryError) as caught:
        AppriseChannel.from_urls([url], timeout=0.5).send(notice_for(url))
    assert time.monotonic() - started < 1.5
    assert_no_url(caught.value, url)


def test_a_send_never_outlasts_the_deadline_it_is_given(hook: HookSink) -> None:
    hook.silent = True
    url = hook.url()
    started = time.monotonic()
    with pytest.raises(RetryableDeliveryError):
        AppriseChannel.from_urls([url], timeout=10).send(notice_for(url), deadline=started + 0.4)
    assert time.monotonic() - started < 1.0


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        AppriseChannel({}, timeout=0)
