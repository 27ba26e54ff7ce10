"""A local SMTP server that keeps what it receives: for the demo and for tests.

Runs aiosmtpd in its own thread. Tests wait on a condition (``wait_for``) instead of sleeping,
and can make the sink refuse mail with a chosen reply code to exercise the retry policy.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
import socket
import sys
import threading
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, Literal, TextIO

from aiosmtpd.controller import Controller

Stage = Literal["rcpt", "data"]

_REPLIES = {
    421: "421 4.3.2 Service not available (b24notify sink)",
    450: "450 4.2.0 Mailbox busy (b24notify sink)",
    451: "451 4.7.1 Try again later (b24notify sink)",
    452: "452 4.2.2 Insufficient storage (b24notify sink)",
    550: "550 5.1.1 Mailbox unavailable (b24notify sink)",
    551: "551 5.1.6 User not local (b24notify sink)",
    552: "552 5.2.2 Mailbox full (b24notify sink)",
    553: "553 5.1.3 Mailbox name not allowed (b24notify sink)",
    554: "554 5.7.1 Transaction failed (b24notify sink)",
}


def _reply(code: int) -> str:
    return _REPLIES.get(code, f"{code} Refused by b24notify sink")


class SmtpSink:
    """``with SmtpSink() as sink: ... sink.wait_for(1)``; ``sink.port`` is where it listens."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        on_message: Callable[[EmailMessage], None] | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._on_message = on_message
        self._condition = threading.Condition()
        self._messages: list[EmailMessage] = []
        self._refusals: list[tuple[int, Stage]] = []  # one entry per transaction still to refuse
        self._refused_addresses: dict[str, int] = {}
        self._transactions: dict[int, tuple[int, Stage] | None] = {}  # id(session) -> refusal
        self._data_reply_delay = 0.0
        self._random_refusal: tuple[float, int, Stage] | None = None  # share of transactions, code, stage
        self._rng = random.Random(0)
        self._controller: Controller | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._controller is not None:
            raise RuntimeError("SmtpSink is already running")
        port = self._requested_port or _free_port(self.host)
        controller = Controller(_Handler(self), hostname=self.host, port=port)
        controller.start()
        self._controller, self._port = controller, port

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("SmtpSink has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    # -- what arrived --------------------------------------------------------------------------

    @property
    def messages(self) -> list[EmailMessage]:
        with self._condition:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        """Wait until at least ``count`` messages have arrived; raise TimeoutError otherwise."""
        with self._condition:
            if not self._condition.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(f"expected {count} messages within {timeout}s, got {len(self._messages)}")
            return list(self._messages)

    # -- making it refuse ----------------------------------------------------------------------

    def refuse_next(self, n: int = 1, code: int = 451, *, at: Stage = "rcpt") -> None:
        """Refuse the next ``n`` transactions with ``code``: every RCPT TO, or the DATA."""
        with self._condition:
            self._refusals.extend([(code, at)] * n)

    def refuse_randomly(self, share: float, code: int = 451, *, at: Stage = "rcpt", seed: int = 0) -> None:
        """From now on refuse about ``share`` of the transactions (after any ``refuse_next``), drawn
        from a seeded generator: a flaky server, for chaos runs."""
        with self._condition:
            self._random_refusal = (share, code, at) if share > 0 else None
            self._rng = random.Random(seed)

    def answer_data_after(self, seconds: float) -> None:
        """Take each message at once but answer its DATA only ``seconds`` later, like a server
        slow to confirm: the mail is accepted before the client hears so."""
        with self._condition:
            self._data_reply_delay = seconds

    def refuse_address(self, address: str, code: int = 550) -> None:
        """Refuse RCPT TO for ``address`` from now on (a partial refusal when there are others)."""
        with self._condition:
            self._refused_addresses[address.lower()] = code

    # -- called from the server thread by _Handler ---------------------------------------------

    def _begin_transaction(self, session: object) -> None:
        with self._condition:
            refusal = self._refusals.pop(0) if self._refusals else None
            if refusal is None and self._random_refusal is not None:
                share, code, stage = self._random_refusal
                refusal = (code, stage) if self._rng.random() < share else None
            self._transactions[id(session)] = refusal

    def _refusal(self, session: object, stage: Stage, address: str = "") -> str | None:
        with self._condition:
            refusal = self._transactions.get(id(session))
            if refusal is not None and refusal[1] == stage:
                return _reply(refusal[0])
            if stage == "rcpt" and address.lower() in self._refused_addresses:
                return _reply(self._refused_addresses[address.lower()])
            return None

    def _deliver(self, session: object, content: bytes) -> None:
        message = email.message_from_bytes(content, _class=EmailMessage, policy=email.policy.default)
        # The callback runs first, so when wait_for returns it has seen those messages too.
        if self._on_message is not None:
            self._on_message(message)
        with self._condition:
            self._transactions.pop(id(session), None)
            self._messages.append(message)
            self._condition.notify_all()


class _Handler:
    """aiosmtpd's handler hooks, forwarding to the sink (they run in the server's thread)."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        self._sink._begin_transaction(session)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self._sink._refusal(session, "rcpt", address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        refusal = self._sink._refusal(session, "data")
        if refusal is not None:
            return refusal
        content = envelope.original_content or envelope.content
        self._sink._deliver(session, content)
        delay = self._sink._data_reply_delay
        if delay > 0:
            await asyncio.sleep(delay)
        return "250 Message accepted for delivery"


def _free_port(host: str) -> int:
    """A port the OS considers free right now. aiosmtpd's Controller cannot listen on port 0:
    it connects to its own port to check it is up, so it needs the real number beforehand."""
    family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def print_message(message: EmailMessage, file: TextIO | None = None) -> None:
    """A short human summary of a received mail, for the demo."""
    out = file or sys.stdout
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    print(f"From:    {message['From']}", file=out)
    print(f"To:      {message['To']}", file=out)
    print(f"Subject: {message['Subject']}", file=out)
    print("", file=out)
    print(text.rstrip(), file=out)
    print("-" * 72, file=out, flush=True)
