"""Several alerts of one task for one reader are one message (a digest), in the reader's language;
one alert reads as it always did, in either language."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from email.message import EmailMessage

import pytest

from b24notify.alerts import Alert, sample_alert
from b24notify.diff import ChangeKind
from b24notify.render import MailRenderer, render_chat, render_email
from b24notify.render.chat import MAX_DIGEST_ENTRIES, MAX_ENTRY_CHARS
from b24notify.render.email import message_id
from b24notify.render.preview import email_part

TASK_URL = "https://acme.bitrix24.com/company/personal/user/503/tasks/task/view/8017/"


def results(
    kind: ChangeKind, count: int, *, first_id: int = 23, text: str = "Done", closed: bool = False
) -> list[Alert]:
    base = sample_alert(kind, text=text, formatted_text=text, closed=closed)
    return [
        replace(base, change_key=f"{first_id + i}:{kind.value}", result=replace(base.result, id=first_id + i))
        for i in range(count)
    ]


def closed(count: int, *, first_id: int = 23, text: str = "Done") -> list[Alert]:
    return results(ChangeKind.CLOSED, count, first_id=first_id, text=text, closed=True)


def mail(alerts: Alert | list[Alert], language: str = "en", key: str | None = None) -> EmailMessage:
    message = render_email(alerts, sender="alerts@example.com", recipients=["anna@example.com"],
                           language=language, key=key)
    parsed = email.message_from_bytes(message.as_bytes(), _class=EmailMessage, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.mark.parametrize(
    ("language", "headline", "by", "files"),
    [("en", "6 results closed", "Anna Smith", "2 files"), ("ru", "6 результатов закрыто", "Anna Smith", "2 файла")],
)
def test_six_closed_results_are_one_chat_message_naming_the_task_once(
    language: str, headline: str, by: str, files: str
) -> None:
    message = render_chat(closed(6), language)

    assert message.split("\n") == [
        f"[b]{headline}[/b]",
        f"[url={TASK_URL}]Sign the contract[/url] #8017",
        *[f"• {by}: Done ({files})"] * 6,
    ]


@pytest.mark.parametrize(
    ("language", "headline", "entries"),
    [
        ("en", "2 new results, 1 new closed result, 1 result closed, 1 result edited, 1 result removed", [
            "• New closed result — Anna Smith: Done (2 files)",
            "• New result — Anna Smith: Done (2 files)",
            "• New result — Anna Smith: Done (2 files)",
            "• Result edited — Anna Smith: Done (2 files)",
            "• Result closed — Anna Smith: Done (2 files)",
            "• Result removed — Anna Smith: Done (2 files)",
        ]),
        ("ru", "2 новых результата, 1 новый закрытый результат, 1 результат закрыт, 1 результат изменён, "
               "1 результат удалён", [
            "• Новый закрытый результат — Anna Smith: Done (2 файла)",
            "• Новый результат — Anna Smith: Done (2 файла)",
            "• Новый результат — Anna Smith: Done (2 файла)",
            "• Результат изменён — Anna Smith: Done (2 файла)",
            "• Результат закрыт — Anna Smith: Done (2 файла)",
            "• Результат удалён — Anna Smith: Done (2 файла)",
        ]),
    ],
)
def test_mixed_kinds_are_counted_in_a_fixed_order_and_each_entry_says_its_kind(
    language: str, headline: str, entries: list[str]
) -> None:
    # The headline counts in a fixed order; the entries keep the order they came in (the diff's).
    alerts = [
        *results(ChangeKind.NEW, 1, first_id=50, closed=True),
        *results(ChangeKind.NEW, 2, first_id=30),
        *results(ChangeKind.EDITED, 1, first_id=35),
        *closed(1),
        *results(ChangeKind.REMOVED, 1, first_id=40),
    ]
    lines = render_chat(alerts, language).split("\n")

    assert lines[0] == f"[b]{headline}[/b]"
    assert lines[2:] == entries


def test_two_new_results_and_one_closed_read_as_the_issue_says() -> None:
    alerts = [*results(ChangeKind.NEW, 2), *closed(1, first_id=25)]
    assert render_chat(alerts).startswith("[b]2 new results, 1 result closed[/b]\n")
    assert render_chat(alerts, "ru").startswith("[b]2 новых результата, 1 результат закрыт[/b]\n")


def test_a_digest_entry_without_an_author_leads_with_its_kind() -> None:
    alerts = [replace(a, author_name="") for a in closed(2)]
    assert render_chat(alerts).split("\n")[2:] == ["• Result closed: Done (2 files)"] * 2


def test_digest_entries_are_one_line_and_cut_shorter() -> None:
    alerts = closed(2, text="Line one[br]line two\r\n" + "word " * 500)
    entries = render_chat(alerts).split("\n")[2:]

    assert len(entries) == 2
    assert entries[0].startswith("• Anna Smith: Line one line two word word")
    text = entries[0].removeprefix("• Anna Smith: ").removesuffix(" (2 files)")
    assert len(text) <= MAX_ENTRY_CHARS
    assert text.endswith("…")


@pytest.mark.parametrize(("language", "more"), [("en", "… and 5 more results"), ("ru", "… и ещё 5 результатов")])
def test_a_long_digest_lists_twenty_and_counts_the_rest(language: str, more: str) -> None:
    lines = render_chat(closed(MAX_DIGEST_ENTRIES + 5), language).split("\n")

    assert len(lines) == 2 + MAX_DIGEST_ENTRIES + 1
    assert lines[-1] == more
    assert lines[0] in ("[b]25 results closed[/b]", "[b]25 результатов закрыто[/b]")


def test_a_huge_digest_stays_far_below_the_portals_limit() -> None:
    hostile = "[b][url=x]" + "[" * 20_000
    alerts = [replace(a, author_name="[" * 10_000, task=replace(a.task, title="[" * 10_000))
              for a in closed(500, text=hostile)]

    assert len(render_chat(alerts)) < 30_000


def test_alerts_of_two_tasks_or_none_are_refused() -> None:
    other = sample_alert()
    other = replace(other, task=replace(other.task, id=9000))
    with pytest.raises(ValueError, match="one task"):
        render_chat([sample_alert(), other])
    with pytest.raises(ValueError, match="no alerts"):
        render_chat([])
    with pytest.raises(ValueError, match="one task"):
        render_email([sample_alert(), other], sender="a@example.com", recipients=["b@example.com"])


def test_a_single_alert_reads_the_same_in_russian() -> None:
    message = render_chat(sample_alert(ChangeKind.CLOSED, text="Client signed", closed=True), "ru")

    assert message.split("\n") == [
        "[b]Результат закрыт[/b]",
        f"[url={TASK_URL}]Sign the contract[/url] #8017",
        "Автор: Anna Smith",
        "Client signed",
        "Прикреплено файлов: 2",
    ]


def test_a_task_without_a_title_is_named_in_the_readers_language() -> None:
    alert = sample_alert(title="")
    assert f"[url={TASK_URL}]Задача #8017[/url] #8017" in render_chat(alert, "ru-RU")
    assert mail(alert, "ru")["Subject"] == "Новый результат в задаче #8017: Задача #8017"


def test_an_unknown_language_reads_english() -> None:
    assert render_chat(sample_alert(), "de") == render_chat(sample_alert())


@pytest.mark.parametrize(
    ("language", "subject", "created", "opener"),
    [
        ("en", "6 results closed in task #8017: Sign the contract", "Created: Jul 15, 2025, 2:30:00\u202fPM GMT+02:00",
         f"Open the task: {TASK_URL}"),
        ("ru", "6 результатов закрыто в задаче #8017: Sign the contract",
         "Создан: 15 июл. 2025\u202fг., 14:30:00 GMT+02:00", f"Открыть задачу: {TASK_URL}"),
    ],
)
def test_a_digest_mail_lists_every_result_in_the_readers_language(
    language: str, subject: str, created: str, opener: str
) -> None:
    message = mail(closed(6), language)
    text, html = email_part(message, "plain"), email_part(message, "html")

    assert message["Subject"] == subject
    assert message["Content-Language"] == language
    assert text.count(created) == 6
    assert [f"{n}." in text for n in range(1, 7)] == [True] * 6
    assert opener in text
    assert html.count("<blockquote") == 6
    assert f'<html lang="{language}">' in html


def test_a_digest_mail_is_not_cut() -> None:
    message = mail(closed(MAX_DIGEST_ENTRIES * 2))
    assert email_part(message, "plain").count("Created:") == MAX_DIGEST_ENTRIES * 2


def test_the_key_names_the_mail() -> None:
    key = "acme.bitrix24.com:8017:23:closed+5:0123456789ab|email:u503"
    message = mail(closed(6), key=key)

    assert message["Message-ID"] == message_id(key)
    assert message["X-B24Notify-Key"] == key
    assert mail(closed(6), key=key)["Message-ID"] == message["Message-ID"]
    assert mail(closed(6), key=key + "x")["Message-ID"] != message["Message-ID"]


def test_without_a_key_the_first_alert_names_the_mail() -> None:
    alert = sample_alert()
    message = MailRenderer().render(alert, sender="a@example.com", recipients=["b@example.com"])

    assert message["Message-ID"] == message_id(alert.key)
    assert message["X-B24Notify-Key"] == alert.key
    assert message["Content-Language"] == "en"


def test_message_id_takes_a_key() -> None:
    assert message_id("k") == message_id("k") != message_id("k2")
    assert message_id("k").startswith("<") and message_id("k").endswith("@b24notify>")
