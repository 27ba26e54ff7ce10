"""The chat message people read in Bitrix24 for each kind of result change."""

from __future__ import annotations

from dataclasses import replace

import pytest

from b24notify.alerts import sample_alert
from b24notify.diff import ChangeKind
from b24notify.render import render_chat
from b24notify.render.bbcode import ZWSP
from b24notify.render.chat import MAX_RESULT_CHARS

TASK_URL = "https://acme.bitrix24.com/company/personal/user/503/tasks/task/view/8017/"


@pytest.mark.parametrize(
    ("kind", "closed", "headline"),
    [
        (ChangeKind.NEW, False, "New result"),
        (ChangeKind.NEW, True, "New closed result"),
        (ChangeKind.CLOSED, True, "Result closed"),
        (ChangeKind.EDITED, False, "Result edited"),
        (ChangeKind.REMOVED, False, "Result removed"),
    ],
)
def test_message_names_the_change_the_task_and_the_author(
    kind: ChangeKind, closed: bool, headline: str
) -> None:
    message = render_chat(sample_alert(kind, text="Client signed the documents", closed=closed))

    assert message.split("\n") == [
        f"[b]{headline}[/b]",
        f"[url={TASK_URL}]Sign the contract[/url] #8017",
        "By: Anna Smith",
        "Client signed the documents",
        "Attached files: 2",
    ]


def test_portal_formatting_survives_in_result_text() -> None:
    message = render_chat(sample_alert(text="[B]Monday[/B] at [i]noon"))
    assert "[b]Monday[/b] at [i]noon[/i]" in message


def test_hostile_result_text_cannot_link_or_mention() -> None:
    message = render_chat(sample_alert(text="[url=https://evil.example]click[/url] [user=all] [URL]x[/URL]"))

    assert message.count("[url=") == 1  # ours, around the title
    assert message.count("[/url]") == 1
    assert "[user" not in message.lower()
    assert "evil.example" not in message  # the link is dropped, its text kept
    assert "click" in message


def test_portal_mentions_and_files_become_plain_text_and_odd_brackets_are_inert() -> None:
    message = render_chat(sample_alert(text="[USER=503]Anna[/USER] sent [DISK FILE ID=n12] [send=do]x[/send]"))
    lines = message.split("\n")
    assert lines[3] == "Anna sent  x"
    assert "[" not in lines[3]
    bracketed = render_chat(sample_alert(text="see [draft] and [unknown=1]"))
    assert f"see [{ZWSP}draft] and [{ZWSP}unknown=1]" in bracketed


def test_title_cannot_break_out_of_the_task_link() -> None:
    message = render_chat(sample_alert(title="Pay [/url][url=https://evil.example]now[/URL]\r\n[b]x"))
    link_line = message.split("\n")[1]

    assert link_line == (
        f"[url={TASK_URL}]Pay [{ZWSP}/url][{ZWSP}url=https://evil.example]now[{ZWSP}/URL]"
        f" [{ZWSP}b]x[/url] #8017"
    )


def test_author_name_is_plain_text() -> None:
    alert = replace(sample_alert(), author_name="[b]Eve[/b]\n[user=all]")
    assert f"By: [{ZWSP}b]Eve[{ZWSP}/b] [{ZWSP}user=all]" in render_chat(alert)


def test_long_result_text_is_cut_with_an_ellipsis_and_formatting_closed() -> None:
    message = render_chat(sample_alert(text="[b]" + "word " * 1000))
    text_line = message.split("\n")[3]

    assert len(text_line) <= MAX_RESULT_CHARS + len("[/b]")
    assert text_line.endswith("…[/b]")


def test_empty_title_and_author_and_no_files() -> None:
    alert = sample_alert(title="", text="")
    alert = replace(alert, author_name="", result=replace(alert.result, files=()))

    assert render_chat(alert).split("\n") == ["[b]New result[/b]", f"[url={TASK_URL}]Task #8017[/url] #8017"]
