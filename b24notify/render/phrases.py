"""What the alerts say in words, in the reader's language.

Every string a person reads is a gettext call in this module, so ``pybabel extract``
(b24notify/locale/babel.cfg) finds it and tests/render/test_catalogs.py fails until it is in the
catalogs and translated. Portal text is only ever a ``%(name)s`` argument, never a msgid.
"""

from __future__ import annotations

import gettext
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from b24notify.alerts import Alert
from b24notify.diff import ChangeKind
from b24notify.i18n import N_, format_datetime, translations
from b24notify.render.text import single_line, truncate

# Titles and names are short in practice; a longer one (a broken or hostile portal) is cut, so a
# message's size never depends on them.
MAX_TITLE_CHARS = 250
MAX_AUTHOR_CHARS = 100

_HEADLINES = {
    ChangeKind.NEW: N_("New result"),
    ChangeKind.CLOSED: N_("Result closed"),
    ChangeKind.EDITED: N_("Result edited"),
    ChangeKind.REMOVED: N_("Result removed"),
}
_NEW_CLOSED = "new-closed"  # a result first seen already closed: NEW, told as closed
# The order in which a digest's headline counts the kinds.
_CATEGORIES = ("new", _NEW_CLOSED, "closed", "edited", "removed")


def category(alert: Alert) -> str:
    if alert.kind is ChangeKind.NEW and alert.result.is_closed:
        return _NEW_CLOSED
    return alert.kind.value


def headline(alert: Alert, language: str = "en") -> str:
    """What happened, in two or three words. A result first seen already closed says so."""
    t = translations(language)
    if category(alert) == _NEW_CLOSED:
        return t.gettext("New closed result")
    return t.gettext(_HEADLINES[alert.kind])


def _count(category_name: str, n: int, t: gettext.NullTranslations) -> str:
    # One call per kind, spelled out, so each plural pair is extracted as it is.
    if category_name == "new":
        phrase = t.ngettext("%(num)d new result", "%(num)d new results", n)
    elif category_name == _NEW_CLOSED:
        phrase = t.ngettext("%(num)d new closed result", "%(num)d new closed results", n)
    elif category_name == "closed":
        phrase = t.ngettext("%(num)d result closed", "%(num)d results closed", n)
    elif category_name == "edited":
        phrase = t.ngettext("%(num)d result edited", "%(num)d results edited", n)
    else:
        phrase = t.ngettext("%(num)d result removed", "%(num)d results removed", n)
    return phrase % {"num": n}


def mixes_kinds(alerts: Sequence[Alert]) -> bool:
    return len({category(a) for a in alerts}) > 1


def summary(alerts: Sequence[Alert], language: str = "en") -> str:
    """A digest's headline, counted by kind: "6 results closed", "2 new results, 1 result
    closed". A single alert keeps its plain headline."""
    if len(alerts) == 1:
        return headline(alerts[0], language)
    t = translations(language)
    counts = Counter(category(a) for a in alerts)
    return ", ".join(_count(name, counts[name], t) for name in _CATEGORIES if counts[name])


def task_title(alert: Alert, language: str = "en") -> str:
    """The task's title on one line; tasks without a title are named by their id."""
    title = truncate(single_line(alert.task.title), MAX_TITLE_CHARS)
    return title or translations(language).gettext("Task #%(id)d") % {"id": alert.task.id}


def author_name(alert: Alert) -> str:
    """Who pinned the result, on one line ("" when unknown)."""
    return truncate(single_line(alert.author_name), MAX_AUTHOR_CHARS)


def by_author(name: str, language: str = "en") -> str:
    return translations(language).gettext("By: %(author)s") % {"author": name}


def created(when: datetime, language: str = "en") -> str:
    return translations(language).gettext("Created: %(date)s") % {"date": format_datetime(when, language)}


def attached_files(count: int, language: str = "en") -> str:
    return translations(language).gettext("Attached files: %(count)d") % {"count": count}


def file_count(count: int, language: str = "en") -> str:
    """"2 files", for a digest's one-line entries."""
    return translations(language).ngettext("%(num)d file", "%(num)d files", count) % {"num": count}


def more_results(count: int, language: str = "en") -> str:
    """The line that ends a digest cut short."""
    t = translations(language)
    return t.ngettext("… and %(num)d more result", "… and %(num)d more results", count) % {"num": count}


def in_task(what: str, task_id: int, title: str, language: str = "en") -> str:
    """"New result in task #8017: Sign the contract": a subject, the first line of a mail."""
    return translations(language).gettext("%(headline)s in task #%(id)d: %(title)s") % {
        "headline": what, "id": task_id, "title": title,
    }


def in_task_html_pattern(language: str = "en") -> str:
    """The HTML intro's words around a linked title; its ``%(headline)s`` and ``%(link)s`` are
    filled with markup by email.py."""
    return translations(language).gettext("%(headline)s in task %(link)s")


def open_task(url: str, language: str = "en") -> str:
    return translations(language).gettext("Open the task: %(url)s") % {"url": url}


def open_task_link(language: str = "en") -> str:
    return translations(language).gettext("Open the task in Bitrix24")
