"""The alert e-mail: what its headers say, and that nothing from the portal can hurt the reader."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from email.message import EmailMessage

import pytest

from b24notify.alerts import Alert, sample_alert
from b24notify.diff import ChangeKind
from b24notify.render import MailRenderer, render_email
from b24notify.render.email import MAX_SUBJECT_CHARS

TASK_URL = "https://acme.bitrix24.com/company/personal/user/503/tasks/task/view/8017/"
HOSTILE_HTML = (
    "<p>Signed <b>today</b></p><script>alert('x')</script>"
    "<img src=x onerror=\"alert('img')\"><a href=\"javascript:alert('js')\">js link</a>"
    "<a href=\"https://docs.example/contract\" onclick=\"steal()\">contract</a>"
    "<a href=\"/company/personal/user/503/\">Anna</a><a href=\"//evil.example/x\">proto</a>"
    "<a href=\"data:text/html,evil\">data</a><iframe src=\"https://evil.example\"></iframe>"
    "<div style=\"position:fixed\">styled</div>"
)


def mail(alert: Alert) -> EmailMessage:
    message = render_email(alert, sender="b24notify <alerts@example.com>", recipients=["team@example.com"])
    # What a mail client sees: the message serialised and parsed again.
    parsed = email.message_from_bytes(message.as_bytes(), _class=EmailMessage, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert isinstance(part, EmailMessage)
    assert part.get_content_type() == f"text/{subtype}"
    content = part.get_content()
    assert isinstance(content, str)
    return content


@pytest.mark.parametrize(
    ("kind", "closed", "subject"),
    [
        (ChangeKind.NEW, False, "New result in task #8017: Sign the contract"),
        (ChangeKind.NEW, True, "New closed result in task #8017: Sign the contract"),
        (ChangeKind.CLOSED, True, "Result closed in task #8017: Sign the contract"),
        (ChangeKind.EDITED, False, "Result edited in task #8017: Sign the contract"),
        (ChangeKind.REMOVED, False, "Result removed in task #8017: Sign the contract"),
    ],
)
def test_subject_names_the_change_and_the_task(kind: ChangeKind, closed: bool, subject: str) -> None:
    assert mail(sample_alert(kind, closed=closed))["Subject"] == subject


def test_headers_identify_the_alert() -> None:
    alert = sample_alert()
    message = mail(alert)

    assert message["From"] == "b24notify <alerts@example.com>"
    assert message["To"] == "team@example.com"
    assert message["Date"] is not None
    assert message["X-B24Notify-Key"] == "acme.bitrix24.com:8017:23:new"
    assert message.get_content_type() == "multipart/alternative"


def test_message_id_is_stable_per_alert_and_differs_between_alerts() -> None:
    renderer = MailRenderer()
    first = renderer.render(sample_alert(), sender="a@example.com", recipients=["b@example.com"])
    again = render_email(sample_alert(), sender="a@example.com", recipients=["b@example.com"])
    closed = render_email(
        sample_alert(ChangeKind.CLOSED), sender="a@example.com", recipients=["b@example.com"]
    )

    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] != closed["Message-ID"]
    assert first["Message-ID"].startswith("<") and first["Message-ID"].endswith("@b24notify>")


def test_both_bodies_show_the_result_and_link_the_task() -> None:
    message = mail(sample_alert(text="[B]Monday[/B] as agreed", formatted_text="<b>Monday</b> as agreed"))
    text, html = body(message, "plain"), body(message, "html")

    assert "Monday as agreed" in text
    assert "[B]" not in text
    assert TASK_URL in text
    assert "By: Anna Smith" in text
    assert "Attached files: 2" in text
    assert "<b>Monday</b> as agreed" in html
    assert f'<a href="{TASK_URL}">Sign the contract</a>' in html


def test_hostile_html_in_the_result_is_removed() -> None:
    html = body(mail(sample_alert(formatted_text=HOSTILE_HTML)), "html")

    assert "<script" not in html and "alert('x')" not in html
    assert "<img" not in html and "onerror" not in html
    assert "javascript:" not in html
    assert "onclick" not in html
    assert "<iframe" not in html and "style=\"position" not in html
    assert "data:text" not in html
    assert "//evil.example" not in html
    assert "<p>Signed <b>today</b></p>" in html
    assert '<a href="https://docs.example/contract" rel="noopener noreferrer">contract</a>' in html
    # A link relative to the portal points at the portal.
    assert '<a href="https://acme.bitrix24.com/company/personal/user/503/" rel="noopener noreferrer">' in html


def test_title_and_author_are_escaped_in_html() -> None:
    alert = replace(sample_alert(title="<b onmouseover=x>Q3</b> & more"), author_name="<script>x</script>")
    html = body(mail(alert), "html")

    assert "&lt;b onmouseover=x&gt;Q3&lt;/b&gt; &amp; more" in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>" not in html


def test_line_breaks_in_the_title_stay_out_of_the_headers() -> None:
    message = mail(sample_alert(title="Invoice\r\nBcc: victim@example.com\nX-Evil: 1\x0bVT\u2028LS"))

    assert message["Bcc"] is None
    assert message["X-Evil"] is None
    # .strip(): Python folds a long Subject right after the colon and its parser keeps the space.
    assert message["Subject"].strip() == (
        "New result in task #8017: Invoice Bcc: victim@example.com X-Evil: 1 VT LS"
    )


def test_long_titles_give_a_capped_subject() -> None:
    subject = mail(sample_alert(title="Contract " * 100))["Subject"].strip()
    assert len(subject) <= MAX_SUBJECT_CHARS
    assert subject.endswith("…")


def test_result_without_html_falls_back_to_its_text() -> None:
    html = body(mail(sample_alert(text="Signed <b>&", formatted_text="")), "html")
    assert "Signed &lt;b&gt;&amp;" in html
