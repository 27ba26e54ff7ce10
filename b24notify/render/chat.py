"""The chat message for an alert: the BBCode ``MESSAGE`` of ``im.message.add`` (docs/protocol.md §9).

Pure functions. Every piece of user text goes through ``neutralize_bbcode`` so that only our own
``[url=...]`` and ``[b]`` tags are live in the message.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from b24notify.alerts import Alert
from b24notify.diff import ChangeKind
from b24notify.render.bbcode import FORMATTING_TAGS, neutralize_bbcode, strip_bbcode

MAX_RESULT_CHARS = 1000
ELLIPSIS = "…"

_HEADLINES = {
    ChangeKind.NEW: "New result",
    ChangeKind.CLOSED: "Result closed",
    ChangeKind.EDITED: "Result edited",
    ChangeKind.REMOVED: "Result removed",
}

# C0 and C1 controls (CR, LF, TAB, NEL, ...) and the Unicode line and paragraph separators:
# anything a chat client or a mail header could treat as a line break.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def headline(alert: Alert) -> str:
    """What happened, in two or three words. A result first seen already closed says so."""
    if alert.kind is ChangeKind.NEW and alert.result.is_closed:
        return "New closed result"
    return _HEADLINES[alert.kind]


def single_line(text: str) -> str:
    """``text`` with control characters and line breaks folded into single spaces."""
    return " ".join(_LINE_BREAKING.sub(" ", text).split())


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    space = cut.rfind(" ")
    if space > len(cut) * 0.8:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def task_title(alert: Alert) -> str:
    """The task's title on one line; tasks without a title are named by their id."""
    return single_line(alert.task.title) or f"Task #{alert.task.id}"


def render_chat(alert: Alert) -> str:
    task, result = alert.task, alert.result
    title = neutralize_bbcode(task_title(alert), allow_formatting=False)
    # The URL is built from the portal's address and ids, but a "]" or a space in it would end
    # our [url=...] tag early, so those are percent-encoded.
    url = quote(alert.task_url, safe=":/?#@!$&'()*+,;=%~")
    lines = [
        f"[b]{headline(alert)}[/b]",
        f"[url={url}]{title}[/url] #{task.id}",
    ]
    author = single_line(alert.author_name)
    if author:
        lines.append(f"By: {neutralize_bbcode(author, allow_formatting=False)}")
    # Portal tags other than simple formatting (mentions, links, disk files) become their plain
    # text; whatever bracketed text remains is then made inert by the neutralizer.
    text = strip_bbcode(result.text, keep=FORMATTING_TAGS | {"br"})
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if text:
        # Truncate first, then neutralize: a tag cut in half is just text to the neutralizer,
        # and a formatting tag cut off from its closer is closed by it.
        lines.append(neutralize_bbcode(truncate(text, MAX_RESULT_CHARS), allow_formatting=True))
    if result.files:
        lines.append(f"Attached files: {len(result.files)}")
    return "\n".join(lines)
