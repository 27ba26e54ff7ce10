"""Languages: how a recipient's language is recognised, the compiled catalogs, plurals and dates."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from b24notify.i18n import LANGUAGES, format_datetime, normalize_language, translations

WHEN = datetime.fromisoformat("2025-07-15T14:30:00+02:00")


@pytest.mark.parametrize(
    ("value", "language"),
    [
        ("ru", "ru"), ("RU", "ru"), ("ru_RU", "ru"), ("ru-RU", "ru"), (" ru-ru ", "ru"), ("ru_RU.UTF-8", "ru"),
        ("en", "en"), ("en_US", "en"), ("EN-gb", "en"),
        ("de", "en"), ("", "en"), (None, "en"), ("russian", "en"), ("-ru", "en"),
    ],
)
def test_language_is_recognised_however_written_and_unknown_ones_are_english(
    value: str | None, language: str
) -> None:
    assert normalize_language(value) == language


def test_languages_are_english_and_russian() -> None:
    assert LANGUAGES == ("en", "ru")


def test_catalogs_compile_once_per_language() -> None:
    assert translations("RU") is translations("ru_RU") is translations("ru")
    assert translations("de") is translations("en")
    assert translations("ru") is not translations("en")


def test_words_are_translated() -> None:
    assert translations("ru").gettext("New result") == "Новый результат"
    assert translations("en").gettext("New result") == "New result"


@pytest.mark.parametrize(
    ("count", "russian"),
    [
        (1, "1 результат закрыт"), (2, "2 результата закрыты"), (4, "4 результата закрыты"),
        (5, "5 результатов закрыто"), (11, "11 результатов закрыто"), (12, "12 результатов закрыто"),
        (21, "21 результат закрыт"), (22, "22 результата закрыты"), (25, "25 результатов закрыто"),
        (101, "101 результат закрыт"), (111, "111 результатов закрыто"),
    ],
)
def test_russian_counts_take_the_right_plural_form(count: int, russian: str) -> None:
    ru = translations("ru").ngettext("%(num)d result closed", "%(num)d results closed", count)
    assert ru % {"num": count} == russian


@pytest.mark.parametrize(
    ("count", "english"), [(1, "1 result closed"), (2, "2 results closed"), (0, "0 results closed")]
)
def test_english_counts_take_the_right_plural_form(count: int, english: str) -> None:
    en = translations("en").ngettext("%(num)d result closed", "%(num)d results closed", count)
    assert en % {"num": count} == english


def test_dates_are_written_in_the_readers_language_and_keep_their_offset() -> None:
    assert format_datetime(WHEN, "en") == "Jul 15, 2025, 2:30:00\u202fPM GMT+02:00"
    assert format_datetime(WHEN, "ru") == "15 июл. 2025\u202fг., 14:30:00 GMT+02:00"
    moscow = WHEN.astimezone(timezone(timedelta(hours=3)))
    assert format_datetime(moscow, "ru") == "15 июл. 2025\u202fг., 15:30:00 GMT+03:00"
    assert format_datetime(WHEN.replace(tzinfo=None), "ru-RU") == "15 июл. 2025\u202fг., 14:30:00 GMT+00:00"
    assert format_datetime(WHEN.astimezone(UTC), "xx") == "Jul 15, 2025, 12:30:00\u202fPM GMT+00:00"


def test_importing_reads_no_catalog() -> None:
    code = (
        "import b24notify.render, b24notify.render.preview, b24notify.i18n as i18n\n"
        "assert i18n._compiled.cache_info().currsize == 0\n"
        "i18n.translations('ru')\n"
        "assert i18n._compiled.cache_info().currsize == 1\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
