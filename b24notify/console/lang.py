"""The console's language: ``?lang=`` (kept in the session), else the browser's Accept-Language,
else English. The words are the alerts' catalogs (b24notify/locale)."""

from __future__ import annotations

from b24notify.i18n import DEFAULT_LANGUAGE, LANGUAGES


def chosen(value: str | None) -> str | None:
    """A ``?lang=`` value we serve, or None."""
    code = (value or "").strip().lower()
    return code if code in LANGUAGES else None


def from_accept_language(header: str | None) -> str:
    """The browser's most wanted language among ours: ``ru-RU,ru;q=0.9,en;q=0.8`` gives ``ru``."""
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for position, item in enumerate((header or "").split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        code = tag.strip().split("-")[0].split("_")[0].lower()
        if code not in LANGUAGES:
            continue
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        q -= position * 1e-6  # equal weights: the first one named wins
        if q > best_q and q > 0:
            best, best_q = code, q
    return best
