"""The e-mail channel: renders a notice and hands it to an SMTP server, for one recipient.

Configured by one URL, ``smtp://[user:password@]host[:port][?starttls=true][&timeout=SECONDS]``
or ``smtps://...`` (TLS from the first byte). SMTP failures are sorted by reply code: 4xx and
network trouble are retryable, 5xx are permanent, so a wrong password or an unknown mailbox is
not retried forever.

A send has a deadline of its own: each reply may take ``timeout`` (10 s), the whole transaction
at most twice that (``send_seconds``), and never past the deadline the job gives it. A job starts
a send only when that much time is left, so its own time limit never cuts a mail between the
server's "accepted" and the record that it was sent (docs/guarantees.md).

Each notice is one mail to one address (``notice.target.address``), its Message-ID made from the
notice's key: a resend of the same notice carries the same Message-ID.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from typing import TYPE_CHECKING

from b24notify.channels.base import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from b24notify.channels.content import mail
from b24notify.notices import Notice
from b24notify.render.email import MailRenderer
from b24notify.settings.smtp import SmtpConfig

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = logging.getLogger(__name__)

TRANSACTION_TIMEOUTS = 2  # a whole transaction (connect to the end of DATA) may take this many of them

# Control characters (CR and LF above all: a line break in an address is a header or an SMTP
# command injected) have no place in an address we send to.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def address_problem(address: str) -> str | None:
    """Why ``address`` cannot be a recipient, or None. The reason never quotes the address: a
    person's address is theirs, and a reason is logged."""
    if "\r" in address or "\n" in address:
        return "it holds a line break"
    if _CONTROL.search(address):
        return "it holds a control character"
    if "@" not in address:
        return "it has no @"
    return None


class EmailChannel:
    name = "email"

    def __init__(self, smtp: SmtpConfig, sender: str) -> None:
        if any(c in sender for c in "\r\n"):
            raise ValueError("e-mail addresses must not contain line breaks")
        self.smtp = smtp
        self.sender = sender
        self._renderer = MailRenderer()

    @property
    def send_seconds(self) -> float:
        return self.smtp.timeout * TRANSACTION_TIMEOUTS

    def send(self, notice: Notice, *, deadline: float | None = None) -> None:
        address = notice.target.address
        problem = address_problem(address)
        if problem is not None:
            whose = f" of user {notice.target.user_id}" if notice.target.user_id else ""
            raise PermanentDeliveryError(f"e-mail address{whose} unusable: {problem}")
        message = mail(self._renderer, notice, sender=self.sender, recipients=(address,))
        end = time.monotonic() + self.send_seconds
        if deadline is not None:
            end = min(end, deadline)
        try:
            # One recipient: a refusal raises (SMTPRecipientsRefused), there is no partial one.
            self._transmit(message, address, end)
        except (smtplib.SMTPException, OSError) as exc:
            raise self._classify(exc) from exc
        log.debug("event=email.sent key=%s", notice.key)

    def _transmit(self, message: EmailMessage, address: str, end: float) -> None:
        smtp = self._connect(end)
        try:
            if self.smtp.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.smtp.username is not None and self.smtp.password is not None:
                smtp.login(self.smtp.username, self.smtp.password)
            smtp.send_message(message, from_addr=self.sender, to_addrs=[address])
        finally:
            _quit(smtp)

    def _connect(self, end: float) -> smtplib.SMTP:
        cfg = self.smtp
        tls = ssl.create_default_context() if cfg.use_ssl else None
        return _BoundedSMTP(cfg.host, cfg.port, reply_timeout=cfg.timeout, end=end, tls=tls)

    def _classify(self, exc: smtplib.SMTPException | OSError) -> DeliveryError:
        error = classify_smtp_error(exc)
        if self.smtp.password and self.smtp.password in error.reason:
            # Servers do not echo passwords, but a reason is logged, so make sure.
            error = type(error)(error.reason.replace(self.smtp.password, "***"))
        return error


class _BoundedSMTP(smtplib.SMTP):
    """``smtplib.SMTP`` whose every read and write ends by ``end`` (``time.monotonic()``): a timeout
    per reply alone lets a slow server stretch one transaction over many of them. With ``tls`` it
    speaks TLS from the first byte (smtps://), as ``smtplib.SMTP_SSL`` does."""

    def __init__(self, host: str, port: int, *, reply_timeout: float, end: float,
                 tls: ssl.SSLContext | None = None) -> None:
        self._reply_timeout = reply_timeout
        self._end = end
        self._tls = tls
        super().__init__(host, port, timeout=self._time_left())

    def _time_left(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out: the SMTP transaction used up its time")
        return min(self._reply_timeout, left)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_hostname=host)
        return sock

    def send(self, s: ReadableBuffer | str) -> None:
        if self.sock is not None:
            self.sock.settimeout(self._time_left())
        super().send(s)

    def getreply(self) -> tuple[int, bytes]:
        if self.sock is not None:
            self.sock.settimeout(self._time_left())
        return super().getreply()


def classify_smtp_error(exc: smtplib.SMTPException | OSError) -> DeliveryError:
    """Sort an SMTP failure: 4xx replies and network trouble are retryable, 5xx are permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # Every recipient was refused. If any refusal is temporary (greylisting answers 450/451
        # at RCPT), try again: the ones refused for good will then be a partial refusal.
        codes = sorted({code for code, _ in exc.recipients.values()})
        reason = f"all recipients refused (codes {','.join(map(str, codes))})"
        if any(400 <= code < 500 for code in codes):
            return RetryableDeliveryError(reason)
        return PermanentDeliveryError(reason)
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else ""
        reason = f"SMTP {exc.smtp_code} {_single_line(text)}".strip()
        if 500 <= exc.smtp_code < 600:
            return PermanentDeliveryError(reason)
        return RetryableDeliveryError(reason)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return RetryableDeliveryError(f"SMTP server disconnected: {exc}")
    if isinstance(exc, smtplib.SMTPException):
        # What is left is configuration: no STARTTLS or AUTH support, no usable AUTH method.
        return PermanentDeliveryError(f"SMTP: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentDeliveryError(f"TLS certificate not accepted: {exc.verify_message}")
    # Connection refused, reset, DNS failure, timeout (TimeoutError is an OSError).
    return RetryableDeliveryError(f"SMTP connection failed: {type(exc).__name__}: {exc}")


def _single_line(text: str) -> str:
    return " ".join(text.split())[:300]


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye without waiting for the reply. The server accepted the mail at the end of DATA;
    waiting for QUIT's answer only widens the window in which a worker could die between "accepted"
    and recording it as sent (docs/guarantees.md), and a failed QUIT must not turn a delivered mail
    into an error."""
    try:
        if smtp.sock is not None:
            smtp.send("QUIT\r\n")
    except (smtplib.SMTPException, OSError) as exc:
        log.debug("event=email.quit_failed error=%s", type(exc).__name__)
    finally:
        smtp.close()
