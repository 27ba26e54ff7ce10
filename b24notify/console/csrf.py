"""CSRF: every POST form carries the session's token (the login form's too: a visitor's session
carries one before they log in), compared in constant time. A POST without it, or with another,
is refused (403) before it changes anything."""

from __future__ import annotations

import hmac

from b24notify.console.auth import Session

FIELD = "csrf"


def token_ok(session: Session | None, form: dict[str, list[str]]) -> bool:
    given = form.get(FIELD, [])
    if session is None or len(given) != 1:
        return False
    return hmac.compare_digest(given[0].encode("utf-8", "surrogateescape"), session.csrf.encode("ascii"))
