"""Portal text made fit to show: invisible troublemakers removed, lines folded, lengths capped.

These know nothing of BBCode or HTML (bbcode.py and email.py do that after them) and nothing of
languages (phrases.py).
"""

from __future__ import annotations

import re

ELLIPSIS = "…"

# C0 and C1 controls (CR, LF, TAB, NEL, ...) and the Unicode line and paragraph separators:
# anything a chat client or a mail header could treat as a line break.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")

# The explicit bidi embeddings, overrides and isolates (LRE RLE PDF LRO RLO, LRI RLI FSI PDI): one
# RLO in a title would show the rest of our line backwards ("#8017" as "7108#", a file name's
# extension reversed). Right-to-left text reads correctly without them; the marks LRM and RLM,
# which embed nothing, are kept. Lone surrogates (a JSON "\ud800" decodes to one) cannot be encoded,
# so they become U+FFFD.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_LONE_SURROGATES = re.compile("[\ud800-\udfff]")
# Controls that are not line structure: everything in C0/C1 but TAB and LF.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _showable(text: str) -> str:
    return _LONE_SURROGATES.sub("\ufffd", _BIDI_CONTROLS.sub("", text))


def clean_text(text: str) -> str:
    """Multi-line portal text (a result) with ``\\n`` line ends, and no control or bidi
    formatting characters."""
    text = _showable(text).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", text.replace("\u2028", "\n").replace("\u2029", "\n"))


def single_line(text: str) -> str:
    """``text`` with control characters and line breaks folded into single spaces, and no bidi
    formatting characters."""
    return " ".join(_LINE_BREAKING.sub(" ", _showable(text)).split())


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    space = cut.rfind(" ")
    if space > len(cut) * 0.8:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS
