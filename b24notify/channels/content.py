"""What a notice says on each channel: the one place the channels call the renderers.

Chat and personal notifications carry the BBCode chat text; e-mail carries the whole mail; Apprise
carries the mail's subject and its plain-text part (apprise.py says why)."""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage

from b24notify.notices import Notice
from b24notify.render.chat import render_chat
from b24notify.render.email import MailRenderer


def chat_text(notice: Notice) -> str:
    """The BBCode ``MESSAGE`` (``im.message.add``, ``im.notify.system.add``): one alert, or a digest."""
    return render_chat(notice.alerts, notice.language)


def mail(renderer: MailRenderer, notice: Notice, *, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """The e-mail; its Message-ID is made from ``notice.key`` (the changes and the recipient), so
    a resend of the same notice is recognisable as one and two recipients' copies differ."""
    return renderer.render(notice.alerts, sender=sender, recipients=recipients, language=notice.language,
                           key=notice.key)


def plain(renderer: MailRenderer, notice: Notice) -> tuple[str, str]:
    """``(title, body)`` in plain text: the mail's subject and its text part."""
    message = mail(renderer, notice, sender="b24notify", recipients=())
    part = message.get_body(preferencelist=("plain",))
    body = part.get_content() if isinstance(part, EmailMessage) else ""
    return str(message["Subject"] or ""), str(body).strip()
