"""Making user text safe to embed in a Bitrix24 chat message, and plain for an e-mail.

Chat messages are BBCode (docs/protocol.md §9 "BBCode"). Result text comes from the portal as BBCode;
task titles and author names are plain user text. Either could carry ``[url=...]``,
``[user=all]``, ``[send=...]`` or a ``[/url]`` that breaks out of our own
``[url=TASK_URL]title[/url]``, so everything bracketed that we do not explicitly allow is made inert.
"""

from __future__ import annotations

import re

# The portal documents no escape for a literal "[" (docs/protocol.md §9), and HTML entities are not
# decoded in chat messages. A ZERO WIDTH SPACE right after "[" keeps the text readable as it was
# typed while no tag name can follow the bracket any more, so the parser sees no tag.
ZWSP = "\u200b"
INERT_BRACKET = "[" + ZWSP

FORMATTING_TAGS = frozenset({"b", "i", "u", "s"})

# Exactly the tags we keep: [b] [i] [u] [s], their closers, and [br]; no attributes, any case.
_ALLOWED_TAG = re.compile(r"\[(/?)([bius])\]|\[(br)\]", re.IGNORECASE)

# Tags the portal writes into result text (the documented chat tags plus the forum/blog tags of
# task comments). strip_bbcode removes only these, so "[draft]" or "[1]" in a text survive.
_PORTAL_TAGS = (
    "b|i|u|s|br|url|user|chat|context|put|send|call|img|icon|disk|timestamp|code|size|color|font"
    "|quote|list|\\*|p|table|tr|td|th|left|right|center|justify|spoiler|video"
)
_PORTAL_TAG = re.compile(rf"\[(/?)({_PORTAL_TAGS})(?:[= ][^\[\]]*)?\]", re.IGNORECASE)


def neutralize_bbcode(text: str, allow_formatting: bool) -> str:
    """Return ``text`` with every BBCode tag inert except, optionally, simple formatting.

    With ``allow_formatting`` the tags ``[b] [i] [u] [s]`` (and closers) and ``[br]`` survive,
    lower-cased and properly nested: a closer that matches no open tag is made inert, a closer
    for an outer tag closes the inner ones first, and tags still open at the end are closed, so
    formatting never leaks onto the text that follows ours.
    """
    if not allow_formatting:
        return text.replace("[", INERT_BRACKET)

    out: list[str] = []
    open_tags: list[str] = []
    pos = 0
    while (start := text.find("[", pos)) != -1:
        out.append(text[pos:start])
        match = _ALLOWED_TAG.match(text, start)
        if match is None:
            out.append(INERT_BRACKET)
            pos = start + 1
            continue
        pos = match.end()
        closing, name = match.group(1), (match.group(2) or match.group(3)).lower()
        if name == "br":
            out.append("[br]")
        elif not closing:
            open_tags.append(name)
            out.append(f"[{name}]")
        elif name in open_tags:
            while (inner := open_tags.pop()) != name:
                out.append(f"[/{inner}]")
            out.append(f"[/{name}]")
        else:
            out.append(INERT_BRACKET + match.group()[1:])
    out.append(text[pos:])
    out.extend(f"[/{name}]" for name in reversed(open_tags))
    return "".join(out)


def strip_bbcode(text: str, keep: frozenset[str] = frozenset()) -> str:
    """The portal's BBCode as plain text: known tags removed, ``[br]`` as a line break.

    Tags named in ``keep`` stay as they are (the chat keeps simple formatting this way, while
    mentions like ``[USER=503]Anna[/USER]`` become just "Anna").
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(2).lower()
        if name in keep:
            return match.group()
        if match.group(1):
            return ""
        if name == "br":
            return "\n"
        if name == "*":
            return "\n• "
        return ""

    return _PORTAL_TAG.sub(replace, text)
