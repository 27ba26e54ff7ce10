"""The chat message for a notice: the BBCode ``MESSAGE`` of ``im.message.add`` and of
``im.notify.system.add`` (docs/protocol.md §9).

One alert is told in full; several alerts of one task (a digest: one sync closed six results) are
one message with a counted headline, the task once, and a short line per result. Every piece of
portal text goes through ``neutralize_bbcode`` so that only our own ``[url=...]`` and ``[b]`` tags
(and the result's simple formatting) are live in the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from b24notify.alerts import Alert
from b24notify.i18n import normalize_language
from b24notify.render.bbcode import FORMATTING_TAGS, neutralize_bbcode, strip_bbcode
from b24notify.render.phrases import (
    attached_files,
    author_name,
    by_author,
    file_count,
    headline,
    mixes_kinds,
    more_results,
    summary,
    task_title,
)
from b24notify.render.text import ELLIPSIS, clean_text, single_line, truncate

__all__ = [
    "ELLIPSIS",
    "MAX_DIGEST_ENTRIES",
    "MAX_ENTRY_CHARS",
    "MAX_RESULT_CHARS",
    "as_alerts",
    "headline",
    "render_chat",
    "single_line",
    "task_title",
    "truncate",
]

MAX_RESULT_CHARS = 1000  # one alert's result text
MAX_ENTRY_CHARS = 300  # a digest entry's result text
# A digest lists this many results, then says how many more: with every piece capped, the message
# stays far below the portal's 60,000 characters (tests/render/test_hostile_render.py).
MAX_DIGEST_ENTRIES = 20


def as_alerts(alerts: Alert | Sequence[Alert]) -> tuple[Alert, ...]:
    """One alert or the alerts of one task, as a non-empty tuple."""
    found = (alerts,) if isinstance(alerts, Alert) else tuple(alerts)
    if not found:
        raise ValueError("nothing to render: no alerts")
    first = found[0]
    if any(a.portal != first.portal or a.task.id != first.task.id for a in found):
        raise ValueError("a message tells the alerts of one task")
    return found


def render_chat(alerts: Alert | Sequence[Alert], language: str = "en") -> str:
    found = as_alerts(alerts)
    language = normalize_language(language)
    first = found[0]
    title = neutralize_bbcode(task_title(first, language), allow_formatting=False)
    # The URL is built from the portal's address and ids, but a "]" or a space in it would end
    # our [url=...] tag early, so those are percent-encoded.
    url = quote(first.task_url, safe=":/?#@!$&'()*+,;=%~")
    lines = [
        f"[b]{summary(found, language)}[/b]",
        f"[url={url}]{title}[/url] #{first.task.id}",
    ]
    if len(found) == 1:
        lines += _details(first, language)
    else:
        lines += _digest_entries(found, language)
    return "\n".join(lines)


def _details(alert: Alert, language: str) -> list[str]:
    lines = []
    author = author_name(alert)
    if author:
        lines.append(by_author(neutralize_bbcode(author, allow_formatting=False), language))
    # Portal tags other than simple formatting (mentions, links, disk files) become their plain
    # text; whatever bracketed text remains is then made inert by the neutralizer.
    text = clean_text(strip_bbcode(alert.result.text, keep=FORMATTING_TAGS | {"br"})).strip()
    if text:
        # Truncate first, then neutralize: a tag cut in half is just text to the neutralizer,
        # and a formatting tag cut off from its closer is closed by it.
        lines.append(neutralize_bbcode(truncate(text, MAX_RESULT_CHARS), allow_formatting=True))
    if alert.result.files:
        lines.append(attached_files(len(alert.result.files), language))
    return lines


def _digest_entries(alerts: Sequence[Alert], language: str) -> list[str]:
    mixed = mixes_kinds(alerts)
    lines = [_entry(alert, language, mixed) for alert in alerts[:MAX_DIGEST_ENTRIES]]
    if len(alerts) > MAX_DIGEST_ENTRIES:
        lines.append(more_results(len(alerts) - MAX_DIGEST_ENTRIES, language))
    return lines


def _entry(alert: Alert, language: str, mixed: bool) -> str:
    """One line: "• Anna Smith: Signed today (2 files)"; the kind leads when the digest mixes
    kinds ("• Result closed — Anna Smith: …") or nobody is named."""
    author = neutralize_bbcode(author_name(alert), allow_formatting=False)
    kind = headline(alert, language) if mixed or not author else ""
    lead = " — ".join(part for part in (kind, author) if part)
    # [br] and line breaks fold into spaces: an entry is one line.
    text = single_line(clean_text(strip_bbcode(alert.result.text, keep=FORMATTING_TAGS)))
    entry = f"• {lead}"
    if text:
        entry += ": " + neutralize_bbcode(truncate(text, MAX_ENTRY_CHARS), allow_formatting=True)
    if alert.result.files:
        entry += f" ({file_count(len(alert.result.files), language)})"
    return entry
