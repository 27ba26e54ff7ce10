"""Golden files: exactly what people read, in the chat and in the mail, in English and Russian, for
a new, a closed and an edited result and for a digest of six closed results.

The renderings of the preview's samples (b24notify/render/preview.py, ``b24notify preview``) are
compared character for character with the files in tests/render/golden/. After an intended change,
regenerate them and review the diff before committing it:

    UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/render/test_golden.py
    git diff tests/render/golden/

Without UPDATE_GOLDEN=1 the files are only read, never written.
"""

from __future__ import annotations

import email
import email.policy
import os
from email.message import EmailMessage
from pathlib import Path

import pytest

from b24notify.i18n import LANGUAGES
from b24notify.render import render_chat
from b24notify.render.preview import email_headers, email_part, sample_email, sample_notice

GOLDEN = Path(__file__).resolve().parent / "golden"
# Message-ID and X-B24Notify-Key come from the notice's key (notices.py), not from rendering.
HEADERS = ("Subject", "From", "To", "Content-Language")
CASES = {"new": ("new", 1), "closed": ("closed", 1), "edited": ("edited", 1), "digest-6-closed": ("closed", 6)}

pytestmark = pytest.mark.parametrize(("language", "case"), [(lang, case) for lang in LANGUAGES for case in CASES])


def matches_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 and review it"
    expected = path.read_bytes().decode("utf-8")
    assert actual == expected, f"{name} differs from its golden file (UPDATE_GOLDEN=1 if intended)"


def received_mail(language: str, case: str) -> EmailMessage:
    """The sample's e-mail as a mail client gets it: serialised and parsed again."""
    kind, count = CASES[case]
    message = sample_email(sample_notice(kind, count, language))
    parsed = email.message_from_bytes(message.as_bytes(), _class=EmailMessage, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_chat_message(language: str, case: str) -> None:
    kind, count = CASES[case]
    notice = sample_notice(kind, count, language)
    matches_golden(f"chat-{language}-{case}.txt", render_chat(notice.alerts, notice.language) + "\n")


def test_email_headers_and_text_part(language: str, case: str) -> None:
    message = received_mail(language, case)
    text = email_headers(message, HEADERS) + "\n" + email_part(message, "plain")
    matches_golden(f"email-{language}-{case}.txt", text)


def test_email_html_part(language: str, case: str) -> None:
    matches_golden(f"email-{language}-{case}.html", email_part(received_mail(language, case), "html"))
