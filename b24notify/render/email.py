"""The e-mail for an alert: multipart/alternative, plain text and HTML, from Jinja2 templates.

The HTML part carries the portal's ``formattedText`` after ``nh3`` has cut it down to simple
formatting and http(s)/mailto links; the text part carries the BBCode ``text`` with tags stripped.
Headers never see a raw title: control characters and line breaks are folded first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import urljoin

import jinja2
import nh3
from markupsafe import Markup

from b24notify.alerts import Alert
from b24notify.render.bbcode import strip_bbcode
from b24notify.render.chat import headline, single_line, task_title, truncate

MAX_SUBJECT_CHARS = 150
KEY_HEADER = "X-B24Notify-Key"

_HTML_TAGS = frozenset({"b", "i", "u", "s", "strong", "em", "br", "p", "ul", "ol", "li", "blockquote", "a"})
_HTML_ATTRIBUTES = {"a": {"href"}}
_URL_SCHEMES = frozenset({"http", "https", "mailto"})


def message_id(alert: Alert) -> str:
    """The same alert always gets the same Message-ID, so a resend is recognisable as one."""
    digest = hashlib.sha256(alert.key.encode()).hexdigest()[:32]
    return f"<{digest}@b24notify>"


def subject(alert: Alert) -> str:
    text = f"{headline(alert)} in task #{alert.task.id}: {task_title(alert)}"
    return truncate(text, MAX_SUBJECT_CHARS)


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
        html,
        tags=set(_HTML_TAGS),
        attributes={tag: set(names) for tag, names in _HTML_ATTRIBUTES.items()},
        attribute_filter=filter_attribute,
        url_schemes=set(_URL_SCHEMES),
        link_rel="noopener noreferrer",
    )
    return Markup(cleaned)  # nh3 output is the one piece of HTML we mark safe


class MailRenderer:
    """Renders alerts to e-mail. Holds the Jinja2 environment so templates compile once."""

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
        alert: Alert,
        *,
        sender: str,
        recipients: Sequence[str],
        now: datetime | None = None,
    ) -> EmailMessage:
        result = alert.result
        context = {
            "subject": subject(alert),
            "headline": headline(alert),
            "title": task_title(alert),
            "task_id": alert.task.id,
            "task_url": alert.task_url,
            "author_name": single_line(alert.author_name),
            "result_text": strip_bbcode(result.text).strip(),
            "result_html": clean_result_html(result.formatted_text, alert.portal_url),
            "file_count": len(result.files),
        }
        message = EmailMessage()
        message["Subject"] = context["subject"]
        message["From"] = sender
        message["To"] = ", ".join(recipients)
        message["Date"] = format_datetime(now or datetime.now(UTC))
        message["Message-ID"] = message_id(alert)
        message[KEY_HEADER] = single_line(alert.key)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to alerts
        message.set_content(self._env.get_template("result.txt").render(context))
        message.add_alternative(self._env.get_template("result.html").render(context), subtype="html")
        return message


def render_email(alert: Alert, *, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """One-off rendering; a long-lived sender keeps a ``MailRenderer`` instead."""
    return MailRenderer().render(alert, sender=sender, recipients=recipients)
