"""The e-mail channel: renders an alert and hands it to an SMTP server.

Configured by one URL, ``smtp://[user:password@]host[:port][?starttls=true]`` or
``smtps://...`` (TLS from the first byte). SMTP failures are sorted by reply code: 4xx and
network trouble are retryable, 5xx are permanent, so a wrong password or an unknown mailbox is
not retried forever.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from b24notify.alerts import Alert
from b24notify.channels.base import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from b24notify.render.email import MailRenderer

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
DEFAULT_TIMEOUT = 10.0
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    use_ssl: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """Parse ``SMTP_URL``. Error messages never quote the URL: it may hold the password."""
        try:
            parts = urlsplit(url.strip())
            scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
            query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            # urlsplit's own messages can quote the netloc, password included.
            raise ValueError("SMTP_URL is not a valid URL (bad port, host or query?)") from None
        if scheme not in DEFAULT_PORTS:
            raise ValueError("SMTP_URL must start with smtp:// or smtps://")
        if not host:
            raise ValueError("SMTP_URL has no host")
        if parts.path not in ("", "/") or parts.fragment:
            raise ValueError("SMTP_URL must not have a path or a fragment")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if (username is None) != (password is None):
            raise ValueError("SMTP_URL needs both a user name and a password, or neither")

        starttls = False
        for name, value in query:
            if name != "starttls":
                raise ValueError(f"SMTP_URL has an unknown parameter {name!r}; only starttls is allowed")
            if value.lower() not in _TRUE | _FALSE:
                raise ValueError("SMTP_URL parameter starttls must be true or false")
            starttls = value.lower() in _TRUE
        if starttls and scheme == "smtps":
            raise ValueError("SMTP_URL: smtps:// is already TLS, starttls=true makes no sense with it")

        return cls(
            host=host,
            port=port or DEFAULT_PORTS[scheme],
            use_ssl=scheme == "smtps",
            starttls=starttls,
            username=username,
            password=password,
        )

    def redacted_url(self) -> str:
        """The configuration as a URL for logs, the password replaced by ``***``."""
        scheme = "smtps" if self.use_ssl else "smtp"
        auth = f"{quote(self.username, safe='')}:***@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "?starttls=true" if self.starttls else ""
        return f"{scheme}://{auth}{host}:{self.port}{query}"


class EmailChannel:
    name = "email"

    def __init__(self, smtp: SmtpConfig, sender: str, recipients: Sequence[str]) -> None:
        if not recipients:
            raise ValueError("EmailChannel needs at least one recipient")
        for address in (sender, *recipients):
            if any(c in address for c in "\r\n"):
                raise ValueError("e-mail addresses must not contain line breaks")
        self.smtp = smtp
        self.sender = sender
        self.recipients = tuple(recipients)
        self._renderer = MailRenderer()

    def send(self, alert: Alert) -> None:
        message = self._renderer.render(alert, sender=self.sender, recipients=self.recipients)
        try:
            refused = self._transmit(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise self._classify(exc) from exc
        if refused:
            # Some recipients have it; sending again would give them a duplicate. Delivered.
            log.warning(
                "event=email.partial_refusal key=%s refused=%s",
                alert.key,
                ",".join(f"{address}:{code}" for address, (code, _) in sorted(refused.items())),
            )
        log.debug("event=email.sent key=%s recipients=%d", alert.key, len(self.recipients) - len(refused))

    def _transmit(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        smtp = self._connect()
        try:
            if self.smtp.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.smtp.username is not None and self.smtp.password is not None:
                smtp.login(self.smtp.username, self.smtp.password)
            return smtp.send_message(message, from_addr=self.sender, to_addrs=list(self.recipients))
        finally:
            _quit(smtp)

    def _connect(self) -> smtplib.SMTP:
        cfg = self.smtp
        if cfg.use_ssl:
            return smtplib.SMTP_SSL(
                cfg.host, cfg.port, timeout=cfg.timeout, context=ssl.create_default_context()
            )
        return smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)

    def _classify(self, exc: smtplib.SMTPException | OSError) -> DeliveryError:
        error = classify_smtp_error(exc)
        if self.smtp.password and self.smtp.password in error.reason:
            # Servers do not echo passwords, but a reason is logged, so make sure.
            error = type(error)(error.reason.replace(self.smtp.password, "***"))
        return error


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
