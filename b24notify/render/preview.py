"""``b24notify preview``: what people would read for a sample alert, in the chat and in the mail.

The samples are the same task (``alerts.sample_alert``) with portal text in the chosen language;
several of them make a digest. tests/render/test_golden.py renders these same samples, so the
preview shows what the golden files hold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from email.message import EmailMessage

from b24notify.alerts import Alert, sample_alert
from b24notify.diff import ChangeKind
from b24notify.i18n import normalize_language
from b24notify.notices import Notice, Target
from b24notify.render.chat import render_chat
from b24notify.render.email import MailRenderer

PREVIEW_KINDS = tuple(kind.value for kind in ChangeKind)
SENDER = "b24notify <alerts@acme.example>"
SHOWN_HEADERS = ("Subject", "From", "To", "Content-Language", "Message-ID", "X-B24Notify-Key")


@dataclass(frozen=True)
class _SampleText:
    """Portal text of the samples, as people on a portal in that language would write it."""

    title: str
    authors: tuple[str, ...]
    results: tuple[tuple[str, str], ...]  # (BBCode text, formattedText)


_SAMPLES = {
    "en": _SampleText(
        title="Sign the contract",
        authors=("Anna Smith", "Boris Ivanov", "Carla Diaz"),
        results=(
            ("The client [B]signed[/B] the contract, the scan is attached.",
             "The client <b>signed</b> the contract, the scan is attached."),
            ("Invoice sent to the accounting department.", "Invoice sent to the accounting department."),
            ("Originals posted by courier[BR]Tracking number in the file.",
             "Originals posted by courier<br>Tracking number in the file."),
        ),
    ),
    "ru": _SampleText(
        title="Подписать договор",
        authors=("Анна Смирнова", "Борис Иванов", "Карина Диас"),
        results=(
            ("Клиент [B]подписал[/B] договор, скан во вложении.",
             "Клиент <b>подписал</b> договор, скан во вложении."),
            ("Счёт отправлен в бухгалтерию.", "Счёт отправлен в бухгалтерию."),
            ("Оригиналы отправлены курьером[BR]Трек-номер в файле.",
             "Оригиналы отправлены курьером<br>Трек-номер в файле."),
        ),
    ),
}


def sample_alerts(kind: str, count: int = 1, language: str = "en") -> tuple[Alert, ...]:
    """``count`` alerts of ``kind`` for results 23, 24, … of the sample task."""
    change = ChangeKind(kind)  # ValueError for a kind that does not exist
    if count < 1:
        raise ValueError("count must be at least 1")
    sample = _SAMPLES[normalize_language(language)]
    base = sample_alert(change, title=sample.title, closed=change is ChangeKind.CLOSED)
    alerts = []
    for i in range(count):
        text, html = sample.results[i % len(sample.results)]
        result = replace(
            base.result, id=base.result.id + i, comment_id=base.result.comment_id + i, text=text,
            formatted_text=html, created_at=base.result.created_at + timedelta(minutes=17 * i),
            files=base.result.files[: 2 - i % 3],
        )
        alerts.append(replace(base, change_key=f"{result.id}:{change.value}", result=result,
                              author_name=sample.authors[i % len(sample.authors)]))
    return tuple(alerts)


def sample_notice(kind: str, count: int = 1, language: str = "en") -> Notice:
    """The samples as one notice by e-mail to the task's responsible person."""
    language = normalize_language(language)
    target = Target(channel="email", address="anna.smith@acme.example", user_id=503)
    return Notice(sample_alerts(kind, count, language), target, language)


def sample_email(notice: Notice) -> EmailMessage:
    return MailRenderer().render(notice.alerts, sender=SENDER, recipients=[notice.target.address],
                                 language=notice.language, key=notice.key)


def email_headers(message: EmailMessage, names: tuple[str, ...] = SHOWN_HEADERS) -> str:
    """The headers a reader sees, one a line (Date left out: it is the time of sending)."""
    return "".join(f"{name}: {message[name]}\n" for name in names if message[name] is not None)


def email_part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    if not isinstance(part, EmailMessage):
        raise ValueError(f"the mail has no text/{subtype} part")
    content = part.get_content()
    return content if isinstance(content, str) else ""


def preview(language: str, kind: str, count: int = 1) -> str:
    """The chat message and the e-mail (headers, text part, HTML part) of ``count`` sample alerts
    of ``kind`` (one of :data:`PREVIEW_KINDS`) in ``language``."""
    notice = sample_notice(kind, count, language)
    message = sample_email(notice)
    return "\n".join([
        "=== chat (im.message.add, im.notify.system.add) ===",
        render_chat(notice.alerts, notice.language),
        "",
        "=== e-mail ===",
        email_headers(message),
        "--- text/plain ---",
        email_part(message, "plain"),
        "--- text/html ---",
        email_part(message, "html"),
    ])
