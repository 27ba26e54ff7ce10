"""The console's session: a signed cookie (HMAC-SHA256, no server-side state), and the password.

The cookie holds whether its bearer logged in, when, the CSRF token of the session and the
chosen language; it is ``HttpOnly``, ``SameSite=Lax``, ``Path=/console``, ``Secure`` whenever the
request came over https (or ``B24NOTIFY_PUBLIC_URL`` is https), and lives ``SESSION_SECONDS``
from the login (checked from the signed issue time, not only by the browser). A visitor who has
not logged in gets one too (``user`` false): it carries the login form's CSRF token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, replace

from starlette.requests import Request
from starlette.responses import Response

from b24notify.settings import Settings
from b24notify.settings.console import password_matches

COOKIE = "b24notify_console"
COOKIE_PATH = "/console"
SESSION_SECONDS = 12 * 3600
_VERSION = "v1"


@dataclass(frozen=True)
class Session:
    csrf: str
    issued: float
    user: bool = False  # logged in
    lang: str = ""  # chosen with ?lang= ("" : from Accept-Language)

    @classmethod
    def fresh(cls, *, user: bool = False, lang: str = "", now: float | None = None) -> Session:
        return cls(secrets.token_urlsafe(32), time.time() if now is None else now, user, lang)

    def with_lang(self, lang: str) -> Session:
        return replace(self, lang=lang)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    def __init__(self, key: bytes, max_age: float = SESSION_SECONDS) -> None:
        self._key = key
        self.max_age = max_age

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, f"{_VERSION}.{payload}".encode("ascii"), hashlib.sha256).digest())

    def dumps(self, session: Session) -> str:
        payload = _b64(json.dumps({"c": session.csrf, "i": session.issued, "u": session.user, "l": session.lang},
                                  separators=(",", ":")).encode())
        return f"{_VERSION}.{payload}.{self._sign(payload)}"

    def loads(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie, or None when it is missing, forged, garbled or expired."""
        if not cookie or len(cookie) > 1024:
            return None
        version, _, rest = cookie.partition(".")
        payload, _, signature = rest.partition(".")
        if version != _VERSION or not hmac.compare_digest(signature.encode("ascii", "replace"),
                                                          self._sign(payload).encode("ascii")):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(str(data["c"]), float(data["i"]), bool(data["u"]), str(data["l"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        age = (time.time() if now is None else now) - session.issued
        if age >= self.max_age or age < -60:  # a minute of clock skew between web processes
            return None
        return session


class SessionCookies:
    """Reads and writes the session cookie of a request."""

    def __init__(self, settings: Settings) -> None:
        self.codec = SessionCodec(settings.console_session_key())
        public = settings.b24notify_public_url or ""
        self.always_secure = public.startswith("https://")

    def read(self, request: Request) -> Session | None:
        return self.codec.loads(request.cookies.get(COOKIE))

    def secure(self, request: Request) -> bool:
        return self.always_secure or request.url.scheme == "https"

    def write(self, response: Response, request: Request, session: Session) -> None:
        remaining = max(1, int(session.issued + self.codec.max_age - time.time()))
        response.set_cookie(COOKIE, self.codec.dumps(session), max_age=remaining, path=COOKIE_PATH,
                            httponly=True, samesite="lax", secure=self.secure(request))

    def clear(self, response: Response, request: Request) -> None:
        response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=self.secure(request))


class Password:
    """The configured password (or hash), checked in constant time; a hash costs ~0.3 s of CPU,
    so callers run :meth:`matches` in a worker thread."""

    def __init__(self, settings: Settings) -> None:
        plain, hashed = settings.b24notify_console_password, settings.b24notify_console_password_hash
        self._plain = plain.get_secret_value() if plain is not None else None
        self._hash = hashed.get_secret_value() if hashed is not None else None

    def matches(self, given: str) -> bool:
        return password_matches(given, self._plain, self._hash)
