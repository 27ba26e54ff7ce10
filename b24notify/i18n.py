"""The languages people read alerts in: gettext catalogs (``b24notify/locale/<lang>/LC_MESSAGES/
messages.po``) and dates, through Babel.

The ``.po`` files are the only form kept in the repository: each is compiled in memory the first
time its language is asked for, once per process, so nothing is read at import time and there
is no build step that could leave a stale ``.mo`` behind. English is the source language: its
catalog may leave a ``msgstr`` empty, and gettext then shows the ``msgid``.
"""

from __future__ import annotations

import functools
import gettext
import io
import re
from datetime import UTC, datetime
from importlib import resources

from babel.dates import format_datetime as babel_format_datetime
from babel.dates import get_timezone_gmt
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"
DOMAIN = "messages"

_SEPARATORS = re.compile(r"[-_.@]")


def N_(message: str) -> str:
    """Marks a string for extraction (``N_`` is the name gettext tools look for) where it is
    defined; it is translated where it is shown."""
    return message


def normalize_language(value: str | None) -> str:
    """One of :data:`LANGUAGES` for a language as people and portals write it: ``"RU"``,
    ``"ru_RU"``, ``"ru-RU"``, ``"ru_RU.UTF-8"`` give ``"ru"``; anything unknown (or nothing) gives
    the default, English."""
    code = _SEPARATORS.split((value or "").strip(), maxsplit=1)[0].lower()
    return code if code in LANGUAGES else DEFAULT_LANGUAGE


def translations(language: str | None) -> gettext.NullTranslations:
    """The catalog of ``language`` (normalized first), compiled on first use and kept."""
    return _compiled(normalize_language(language))


@functools.cache
def _compiled(language: str) -> gettext.GNUTranslations:
    po = resources.files("b24notify").joinpath("locale", language, "LC_MESSAGES", f"{DOMAIN}.po")
    with po.open("rb") as source:
        catalog = read_po(source, locale=language, domain=DOMAIN)
    mo = io.BytesIO()
    write_mo(mo, catalog)  # fuzzy entries are left out: an unchecked translation is not shown
    mo.seek(0)
    return gettext.GNUTranslations(mo)


def format_datetime(dt: datetime, language: str | None) -> str:
    """``dt`` as the reader's language writes a date and time (Babel's medium format), in the
    offset it carries (the portal's), which is named after it: ``Jul 15, 2025, 2:30:00 PM
    GMT+02:00``, ``15 июл. 2025 г., 14:30:00 GMT+02:00``. A naive ``dt`` is taken as UTC."""
    locale = normalize_language(language)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    # tzinfo=None: Babel keeps the datetime's own offset instead of converting it.
    shown = babel_format_datetime(dt, format="medium", tzinfo=None, locale=locale)
    return f"{shown} {get_timezone_gmt(dt, width='long', locale=locale)}"
