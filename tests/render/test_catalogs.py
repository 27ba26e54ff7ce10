"""Every word the code shows is in the catalogs and translated: a new string cannot ship in English
only. The code's strings are found the way ``pybabel extract`` finds them (b24notify/locale/babel.cfg).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

from b24notify.i18n import LANGUAGES

PACKAGE = Path(__file__).resolve().parents[2] / "b24notify"
LOCALE = PACKAGE / "locale"

MessageId = str | tuple[str, ...]


def code_messages() -> set[MessageId]:
    found = [message for _, _, message, *_ in extract_from_dir(PACKAGE / "render", [("**.py", "python")])]
    found += [message for _, message, *_ in extract_from_file("python", str(PACKAGE / "i18n.py"))]
    found += [message for _, message, *_ in extract_from_file("python", str(PACKAGE / "portals" / "spec.py"))]
    # The operator console: its code and its Jinja2 templates (the `jinja2` extractor Jinja2 registers).
    found += [message for _, _, message, *_ in extract_from_dir(
        PACKAGE / "console", [("**.py", "python"), ("templates/**.html", "jinja2")])]
    return {m if isinstance(m, str) else tuple(m) for m in found}


def catalog(language: str) -> Catalog:
    with (LOCALE / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po, locale=language)


def template() -> Catalog:
    with (LOCALE / "messages.pot").open("rb") as pot:
        return read_po(pot)


def ids(messages: Catalog) -> set[MessageId]:
    return {m.id for m in messages if m.id}


def test_the_code_shows_words() -> None:
    messages = code_messages()
    assert "New result" in messages
    assert ("%(num)d result closed", "%(num)d results closed") in messages
    assert "Dead letters" in messages  # a console template's
    assert "Event received" in messages  # the console's code


def test_the_template_is_up_to_date_with_the_code() -> None:
    assert ids(template()) == code_messages(), "run pybabel extract (b24notify/locale/babel.cfg)"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_catalog_holds_exactly_the_code_messages(language: str) -> None:
    assert ids(catalog(language)) == code_messages(), "run pybabel update -i b24notify/locale/messages.pot"


def test_every_message_is_translated_to_russian() -> None:
    untranslated = []
    for message in catalog("ru"):
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            untranslated.append(message.id)
    assert untranslated == []


def test_russian_has_three_plural_forms() -> None:
    ru = catalog("ru")
    assert ru.num_plurals == 3
    assert ru.plural_expr == get_plural("ru").plural_expr
    for message in ru:
        if message.pluralizable and message.id:
            assert len(message.string) == 3, message.id


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_the_placeholders(language: str) -> None:
    # Babel's checkers: the same %(name)s placeholders, of the same types, as the msgid.
    problems = [(message.id, [str(e) for e in errors]) for message, errors in catalog(language).check()]
    assert problems == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_carry_no_markup(language: str) -> None:
    # Our words go into BBCode and HTML unescaped by the chat: a bracket or a tag in a
    # translation would be live markup.
    for message in catalog(language):
        if not message.id:
            continue  # the header
        shown = (message.id, message.string)
        for string in (s for item in shown for s in ((item,) if isinstance(item, str) else item)):
            assert not set(string) & set("[]<>&"), (message.id, string)
