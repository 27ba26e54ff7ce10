"""``SMTP_URL``, parsed: where and how the e-mail channel talks SMTP. A plain value, part of the
settings; its errors never quote the URL (it may hold the password)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
DEFAULT_TIMEOUT = 10.0  # seconds for any one reply
MAX_TIMEOUT = 300.0  # a whole send (twice this) must still fit in a job (B24NOTIFY_LEASE_SECONDS)
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    use_ssl: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """Parse ``SMTP_URL``. Error messages never quote the URL: it may hold the password."""
        try:
            parts = urlsplit(url.strip())
            scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
            query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            # urlsplit's own messages can quote the netloc, password included.
            raise ValueError("SMTP_URL is not a valid URL (bad port, host or query?)") from None
        if scheme not in DEFAULT_PORTS:
            raise ValueError("SMTP_URL must start with smtp:// or smtps://")
        if not host:
            raise ValueError("SMTP_URL has no host")
        if parts.path not in ("", "/") or parts.fragment:
            raise ValueError("SMTP_URL must not have a path or a fragment")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if (username is None) != (password is None):
            raise ValueError("SMTP_URL needs both a user name and a password, or neither")

        starttls = False
        timeout = DEFAULT_TIMEOUT
        for name, value in query:
            if name == "timeout":
                timeout = _timeout(value)
                continue
            if name != "starttls":
                raise ValueError(f"SMTP_URL has an unknown parameter {name!r}; only starttls and timeout are allowed")
            if value.lower() not in _TRUE | _FALSE:
                raise ValueError("SMTP_URL parameter starttls must be true or false")
            starttls = value.lower() in _TRUE
        if starttls and scheme == "smtps":
            raise ValueError("SMTP_URL: smtps:// is already TLS, starttls=true makes no sense with it")

        return cls(
            host=host,
            port=port or DEFAULT_PORTS[scheme],
            use_ssl=scheme == "smtps",
            starttls=starttls,
            username=username,
            password=password,
            timeout=timeout,
        )

    def redacted_url(self) -> str:
        """The configuration as a URL for logs, the password replaced by ``***``."""
        scheme = "smtps" if self.use_ssl else "smtp"
        auth = f"{quote(self.username, safe='')}:***@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        params = (["starttls=true"] if self.starttls else []) + (
            [f"timeout={self.timeout:g}"] if self.timeout != DEFAULT_TIMEOUT else [])
        query = f"?{'&'.join(params)}" if params else ""
        return f"{scheme}://{auth}{host}:{self.port}{query}"


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ValueError(f"SMTP_URL parameter timeout must be seconds, more than 0 and at most {MAX_TIMEOUT:g}")
    return seconds
