"""The e-mail for a notice: multipart/alternative, plain text and HTML, from Jinja2 templates, in
the reader's language.

The HTML part carries the portal's ``formattedText`` after ``nh3`` has cut it down to simple
formatting and http(s)/mailto links; the text part carries the BBCode ``text`` with tags stripped.
Headers never see a raw title: control characters and line breaks are folded first. A digest (the
alerts of one task from one sync) lists every result; the templates hold no words, only layout:
every phrase comes translated from phrases.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime as rfc2822_datetime
from typing import Any
from urllib.parse import urljoin

import jinja2
import nh3
from markupsafe import Markup, escape

from b24notify.alerts import Alert
from b24notify.i18n import normalize_language
from b24notify.render.bbcode import strip_bbcode
from b24notify.render.chat import as_alerts
from b24notify.render.phrases import (
    attached_files,
    author_name,
    by_author,
    created,
    headline,
    in_task,
    in_task_html_pattern,
    open_task,
    open_task_link,
    summary,
    task_title,
)
from b24notify.render.text import clean_text, single_line, truncate

MAX_SUBJECT_CHARS = 150
# One result's text in a mail. Past this the text part is cut, and the HTML part shows that cut
# plain text instead of the formatted one (HTML cannot be cut safely by length).
MAX_MAIL_RESULT_CHARS = 20_000
MAX_MAIL_RESULT_HTML_CHARS = 40_000
KEY_HEADER = "X-B24Notify-Key"

_HTML_TAGS = frozenset({"b", "i", "u", "s", "strong", "em", "br", "p", "ul", "ol", "li", "blockquote", "a"})
_HTML_ATTRIBUTES = {"a": {"href"}}
_URL_SCHEMES = frozenset({"http", "https", "mailto"})


def message_id(key: str) -> str:
    """The same key (a notice's: its changes and its recipient) always gets the same Message-ID,
    so a resend is recognisable as one."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<{digest}@b24notify>"


def subject(alerts: Alert | Sequence[Alert], language: str = "en") -> str:
    found = as_alerts(alerts)
    first = found[0]
    text = in_task(summary(found, language), first.task.id, task_title(first, language), language)
    return truncate(single_line(text), MAX_SUBJECT_CHARS)


def clean_result_html(html: str, portal_url: str) -> Markup:
    """The portal's ``formattedText`` reduced to simple formatting and safe links.

    Links the portal writes relative to itself (user mentions, for example) are made absolute,
    since a mail client has no base to resolve them against; anything that ends up neither
    http(s) nor mailto loses its href.
    """

    def filter_attribute(tag: str, attribute: str, value: str) -> str | None:
        if tag != "a" or attribute != "href":
            return value
        value = value.strip()
        if value.startswith("/") and not value.startswith("//"):
            value = urljoin(portal_url + "/", value)
        scheme = value.partition(":")[0].lower()
        return value if scheme in _URL_SCHEMES else None

    cleaned = nh3.clean(
        clean_text(html),  # nh3 (Rust) cannot take lone surrogates
        tags=set(_HTML_TAGS),
        attributes={tag: set(names) for tag, names in _HTML_ATTRIBUTES.items()},
        attribute_filter=filter_attribute,
        url_schemes=set(_URL_SCHEMES),
        link_rel="noopener noreferrer",
    )
    # Again after cleaning: character references ("&#x202e;", "&#1;") have become characters by
    # now. Removing characters from nh3's output cannot make markup.
    return Markup(clean_text(cleaned))  # nh3 output is the one piece of HTML we mark safe


@dataclass(frozen=True)
class _Entry:
    """One result as both parts show it."""

    heading: str  # the kind of change, shown in a digest
    by: str  # "By: Anna Smith", or "" when nobody is named
    created: str
    text: str
    html: Markup
    files: str  # "Attached files: 2", or ""


def _entry(alert: Alert, language: str) -> _Entry:
    result = alert.result
    text = truncate(clean_text(strip_bbcode(result.text)).strip(), MAX_MAIL_RESULT_CHARS)
    html = clean_result_html(result.formatted_text, alert.portal_url)
    if len(html) > MAX_MAIL_RESULT_HTML_CHARS:
        html = Markup("")  # the template falls back to the (cut) text
    author = author_name(alert)
    return _Entry(
        heading=headline(alert, language),
        by=by_author(author, language) if author else "",
        created=created(result.created_at, language),
        text=text,
        html=html,
        files=attached_files(len(result.files), language) if result.files else "",
    )


def _intro_html(what: str, alert: Alert, title: str, language: str) -> Markup:
    # The pattern is ours, but escaped all the same; Markup's % escapes every plain argument.
    link = Markup('<a href="%s">%s</a> #%d') % (alert.task_url, title, alert.task.id)
    return Markup(escape(in_task_html_pattern(language))) % {
        "headline": Markup("<strong>%s</strong>") % what,
        "link": link,
    }


class MailRenderer:
    """Renders notices to e-mail. Holds the Jinja2 environment so templates compile once."""

    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("b24notify.render", "templates"),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(
        self,
        alerts: Alert | Sequence[Alert],
        *,
        sender: str,
        recipients: Sequence[str],
        language: str = "en",
        key: str | None = None,
        now: datetime | None = None,
    ) -> EmailMessage:
        found = as_alerts(alerts)
        language = normalize_language(language)
        first = found[0]
        key = key if key is not None else first.key
        what, title = summary(found, language), task_title(first, language)
        context: dict[str, Any] = {
            "language": language,
            "subject": subject(found, language),
            "intro": in_task(what, first.task.id, title, language),
            "intro_html": _intro_html(what, first, title, language),
            "digest": len(found) > 1,
            "entries": [_entry(alert, language) for alert in found],
            "task_url": first.task_url,
            "open_task": open_task(first.task_url, language),
            "open_task_link": open_task_link(language),
        }
        message = EmailMessage()
        message["Subject"] = context["subject"]
        message["From"] = sender
        message["To"] = ", ".join(recipients)
        message["Date"] = rfc2822_datetime(now or datetime.now(UTC))
        message["Message-ID"] = message_id(key)
        message[KEY_HEADER] = single_line(key)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to alerts
        message.set_content(self._env.get_template("result.txt").render(context))
        message.add_alternative(self._env.get_template("result.html").render(context), subtype="html")
        # After the parts: set_content() drops every Content-* header it finds.
        message["Content-Language"] = language
        return message


def render_email(
    alerts: Alert | Sequence[Alert],
    *,
    sender: str,
    recipients: Sequence[str],
    language: str = "en",
    key: str | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """One-off rendering; a long-lived sender keeps a ``MailRenderer`` instead."""
    return MailRenderer().render(alerts, sender=sender, recipients=recipients, language=language, key=key, now=now)
