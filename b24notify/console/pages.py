"""The console's templates, in the reader's language: one Jinja2 environment per language, its
gettext the alerts' catalogs (b24notify/locale; `pybabel extract` reads the templates through
babel.cfg). Every page goes through the redactor on its way out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import jinja2
from babel.dates import format_timedelta

from b24notify.i18n import LANGUAGES, format_datetime, normalize_language, translations


class Pages:
    def __init__(self, redact: Callable[[str], str]) -> None:
        self.redact = redact
        self._envs: dict[str, jinja2.Environment] = {}

    def env(self, language: str) -> jinja2.Environment:
        language = normalize_language(language)
        env = self._envs.get(language)
        if env is None:
            env = jinja2.Environment(
                loader=jinja2.PackageLoader("b24notify.console", "templates"),
                autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                extensions=["jinja2.ext.i18n"],
            )
            # install_gettext_translations comes with the i18n extension (typed stubs do not know it).
            cast(Any, env).install_gettext_translations(translations(language), newstyle=True)
            env.globals.update(
                languages=LANGUAGES,
                when=lambda dt: _when(dt, language),
                ago=lambda seconds: _ago(seconds, language),
            )
            self._envs[language] = env
        return env

    def render(self, name: str, language: str, **context: Any) -> str:
        html = self.env(language).get_template(name).render(lang=normalize_language(language), **context)
        return self.redact(html)


def _when(dt: datetime | None, language: str) -> str:
    if dt is None:
        return "—"
    return format_datetime(dt.astimezone(UTC), language)


def _ago(seconds: float | None, language: str) -> str:
    """A duration in words ("3 minutes", "3 минуты"), Babel's CLDR data."""
    if seconds is None:
        return "—"
    return format_timedelta(timedelta(seconds=max(0.0, seconds)), threshold=1.5, locale=language)
