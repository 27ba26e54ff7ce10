"""neutralize_bbcode: user text in a chat message can format, but never link, mention or command."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from b24notify.render.bbcode import ZWSP, neutralize_bbcode, strip_bbcode

ALLOWED_TOKEN = re.compile(r"\[(?:/?[bius]|br)\]")
ALLOWED_TOKEN_ANY_CASE = re.compile(r"\[(?:/?[bius]|br)\]", re.IGNORECASE)

# Fragments that combine into nasty inputs more often than random text would.
FRAGMENTS = [
    "[", "]", "/", "=", " ", "\n", ZWSP, "b", "B", "i", "u", "s", "S", "br", "BR", "url", "user",
    "[b]", "[/b]", "[B]", "[/B]", "[i]", "[/I]", "[u]", "[/u]", "[s]", "[/s]", "[br]", "[/br]",
    "[url=https://evil.example]", "[/url]", "[URL]", "[user=all]", "[USER=1]", "[/user]",
    "[send=/kick]", "[put=x]", "[img]", "[b=1]", "[ b]", "[[b]]", "x",
]
bbcode_text = st.one_of(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join), st.text())


def allowed_tokens(text: str) -> list[str]:
    return ALLOWED_TOKEN.findall(text)


def plain(text: str) -> str:
    """The text a reader sees, ignoring our zero width spaces and the formatting tags."""
    return ALLOWED_TOKEN_ANY_CASE.sub("", text.replace(ZWSP, "")).lower()


@given(bbcode_text)
@example("[url=https://evil.example]click[/url]")
def test_without_formatting_no_bracket_starts_a_tag(text: str) -> None:
    out = neutralize_bbcode(text, allow_formatting=False)
    assert all(out[i + 1 : i + 2] == ZWSP for i, c in enumerate(out) if c == "[")
    assert out.replace(ZWSP, "") == text.replace(ZWSP, "")


@given(bbcode_text)
@example("[b][i]x[/b][/i]")
@example("[/b]x[b]")
def test_with_formatting_only_allowed_tags_survive_and_they_balance(text: str) -> None:
    out = neutralize_bbcode(text, allow_formatting=True)

    for i, c in enumerate(out):
        if c == "[":
            assert out[i + 1 : i + 2] == ZWSP or ALLOWED_TOKEN.match(out, i), out[i : i + 12]

    stack: list[str] = []
    for token in allowed_tokens(out):
        name = token.strip("[/]")
        if token == "[br]":
            continue
        if token.startswith("[/"):
            assert stack and stack.pop() == name, out
        else:
            stack.append(name)
    assert stack == []

    assert plain(out) == plain(text)


def test_hostile_result_text_is_inert() -> None:
    text = "[url=https://evil.example]click[/url] [user=all] [USER=1]boss[/USER] [send=/x]go[/send]"
    out = neutralize_bbcode(text, allow_formatting=True)
    assert "[url" not in out.lower()
    assert "[user" not in out.lower()
    assert "[send" not in out.lower()
    assert "[/url]" not in out.lower()
    assert out.replace(ZWSP, "") == text


def test_formatting_is_kept_lowercased_and_closed() -> None:
    out = neutralize_bbcode("[B]Monday[/B] and [i]more", allow_formatting=True)
    assert out == "[b]Monday[/b] and [i]more[/i]"


def test_closing_an_outer_tag_closes_the_inner_one_first() -> None:
    out = neutralize_bbcode("[b][i]x[/b]y[/i]", allow_formatting=True)
    assert out == f"[b][i]x[/i][/b]y[{ZWSP}/i]"


def test_formatting_tags_with_attributes_are_not_formatting() -> None:
    out = neutralize_bbcode("[b=1]x[/b]", allow_formatting=True)
    assert out == f"[{ZWSP}b=1]x[{ZWSP}/b]"


def test_line_break_tag_is_kept_only_with_formatting() -> None:
    assert neutralize_bbcode("a[BR]b", allow_formatting=True) == "a[br]b"
    assert neutralize_bbcode("a[br]b", allow_formatting=False) == f"a[{ZWSP}br]b"


def test_strip_bbcode_keeps_text_and_unknown_brackets() -> None:
    text = "[B]Done[/B][br][URL=https://x.example]site[/URL] [USER=5]Ann[/USER] [draft] [DISK FILE ID=n12]"
    assert strip_bbcode(text) == "Done\nsite Ann [draft] "
