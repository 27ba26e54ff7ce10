"""Apprise targets: Telegram, Slack, Teams, ntfy, JSON webhooks and the rest of what Apprise speaks.

A target's URL holds its credentials (a bot token, a webhook's secret path), so it lives only in
the configuration: a notice names it by its fingerprint (``notices.apprise_id(url)``) and this
channel looks it up. No URL goes into an exception, a reason or a log line of ours; a failure
names the plugin's service ("Telegram", "JSON") and the target's fingerprint. Apprise's own log
lines can quote a URL too (masked in a way that leaves a Telegram bot token whole) or a token a
plugin refused, and its DEBUG lines (and urllib3's, below it) hold request URLs: while this
channel parses a URL, Apprise's records from that thread are dropped, and while it sends, those
below WARNING (what is left says what went wrong: an HTTP status, a host). Other threads' records
are untouched: logs.py should hold ``apprise`` and ``urllib3`` at WARNING as it does httpx.

What is sent: the title is the e-mail's subject and the body the e-mail's plain-text part, in the
notice's language. That text is written to be read as plain text (the task's link spelled out,
no markup), while the chat text is BBCode whose user text is made inert with a zero-width space
after every "[", and whose task link would be lost with its tags. Apprise converts plain text
for the services that want Markdown or HTML.

A send is bounded: each request's connect and read timeouts are cut to the time left, and the
send itself runs in a thread the channel waits for only until the deadline. A send still running
then is reported as retryable and uncertain: Apprise may still deliver it, and the retry may then
repeat it (Apprise cannot tell whether a notification arrived, so there is nothing to look up).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import apprise

from b24notify.channels.base import PermanentDeliveryError, RetryableDeliveryError
from b24notify.channels.content import plain
from b24notify.notices import Notice, apprise_id
from b24notify.render.email import MailRenderer

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
# The loggers whose records may quote a URL: Apprise's one logger, and urllib3's request lines
# (a filter applies to the records of its own logger only, not its children's).
_URL_LOGGERS = (apprise.LOGGER_NAME, "urllib3.connectionpool")
_FINGERPRINT = re.compile(r"[0-9a-f]{1,64}")


def _asset() -> apprise.AppriseAsset:
    # Synchronous (one URL, no pool to start), nothing persisted to disk, our name as User-Agent.
    return apprise.AppriseAsset(app_id="b24notify", async_mode=False, storage_mode="memory")


def is_usable(url: str) -> bool:
    """Does some Apprise plugin understand ``url``? (For checking the configuration at start.)"""
    return _plugin(url) is not None


def _plugin(url: str) -> apprise.NotifyBase | None:
    with _quiet_below(logging.CRITICAL + 1):  # all of them: any line it writes here may quote the URL
        return apprise.Apprise.instantiate(url, asset=_asset())


class _OtherThreadsOrAtLeast(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread or record.levelno >= self.level


@contextmanager
def _quiet_below(level: int) -> Iterator[None]:
    """Drop the URL loggers' records below ``level`` made by this thread while the block runs
    (other threads' records, and this thread's afterwards, are untouched)."""
    quiet = _OtherThreadsOrAtLeast(level)
    loggers = [logging.getLogger(name) for name in _URL_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


class AppriseChannel:
    """Each send builds its own Apprise plugin from the URL (cheap: no I/O), so sends share no
    state: no plugin's throttle clock or timeouts carry over, and threads may send at once."""

    name = "apprise"

    def __init__(self, urls: Mapping[str, str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """``urls``: fingerprint (``notices.apprise_id(url)``) to URL. ``timeout``: the longest one
        send may take (``send_seconds``)."""
        if timeout <= 0:
            raise ValueError("AppriseChannel timeout must be positive")
        self._urls = dict(urls)
        self.timeout = timeout
        self._renderer = MailRenderer()

    @classmethod
    def from_urls(cls, urls: Iterable[str], *, timeout: float = DEFAULT_TIMEOUT) -> AppriseChannel:
        return cls({apprise_id(url): url for url in urls}, timeout=timeout)

    def __repr__(self) -> str:
        return f"AppriseChannel(targets={sorted(self._urls)}, timeout={self.timeout})"  # fingerprints only

    @property
    def send_seconds(self) -> float:
        return self.timeout

    def send(self, notice: Notice, *, deadline: float | None = None) -> None:
        url = self._urls.get(notice.target.address)
        # Shown in reasons and logs as it is only when it looks like what apprise_id makes.
        fingerprint = notice.target.address if _FINGERPRINT.fullmatch(notice.target.address) else "(malformed)"
        if url is None:
            raise PermanentDeliveryError(f"apprise target {fingerprint} no longer configured")
        end = time.monotonic() + self.timeout
        if deadline is not None:
            end = min(end, deadline)
        plugin = _plugin(url)
        if plugin is None:
            raise PermanentDeliveryError(f"apprise target {fingerprint} is a URL no Apprise plugin understands")
        service = str(plugin.service_name or type(plugin).__name__)
        title, body = plain(self._renderer, notice)
        left = end - time.monotonic()
        if left <= 0:
            raise RetryableDeliveryError(f"apprise {service}: no time left to send")
        # Every request of this send (a plugin may make several) gives up by then at the latest.
        plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout), left)
        plugin.socket_read_timeout = min(float(plugin.socket_read_timeout), left)
        sender = apprise.Apprise(asset=plugin.asset)
        sender.add(plugin)
        outcome = _Outcome()
        thread = threading.Thread(target=outcome.run, args=(sender, title, body), daemon=True,
                                  name=f"b24notify-apprise-{fingerprint}")
        thread.start()
        thread.join(max(0.0, end - time.monotonic()))
        if thread.is_alive():
            log.warning("event=apprise.timeout target=%s service=%s seconds=%.1f", fingerprint, service, left)
            raise RetryableDeliveryError(f"apprise {service}: no answer within {left:.1f}s", uncertain=True)
        if outcome.error is not None:
            log.warning("event=apprise.failed target=%s service=%s error=%s", fingerprint, service,
                        type(outcome.error).__name__)
            raise RetryableDeliveryError(f"apprise {service}: {type(outcome.error).__name__} while sending")
        if not outcome.sent:
            # Apprise says only "it failed"; its own log line (at WARNING) has the HTTP status.
            log.warning("event=apprise.failed target=%s service=%s", fingerprint, service)
            raise RetryableDeliveryError(f"apprise {service}: the service did not accept the notification")
        log.debug("event=apprise.sent key=%s service=%s", notice.key, service)


class _Outcome:
    """What the send thread leaves behind. An exception is kept by its type only: its text may
    quote the URL."""

    def __init__(self) -> None:
        self.sent = False
        self.error: BaseException | None = None

    def run(self, sender: apprise.Apprise, title: str, body: str) -> None:
        try:
            with _quiet_below(logging.WARNING):  # DEBUG: request URLs and payloads
                self.sent = bool(sender.notify(body=body, title=title, notify_type=apprise.NotifyType.INFO,
                                               body_format=apprise.NotifyFormat.TEXT))
        except Exception as exc:  # the thread must not die with it unseen; the caller sorts it
            self.error = exc
