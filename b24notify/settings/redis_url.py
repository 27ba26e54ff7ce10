"""REDIS_URL forms: ``redis://``, ``rediss://``, ``unix://`` (redis-py's own) and the Sentinel form
``redis+sentinel://[[user]:password@]host1:26379,host2:26379/SERVICE_NAME[/DB]`` (``rediss+sentinel``
for TLS to the primary). Parsing only: b24notify.redis_conn makes the clients. Errors never quote
the URL, which may hold a password."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # Sentinels with `requirepass` of their own: ?sentinel_password=...
    sentinel_password: str | None = field(default=None, repr=False)
    ssl: bool = False


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def check_redis_url(url: str) -> None:
    """Raise ValueError (without the URL in it) when REDIS_URL is not a form we can connect to."""
    scheme = scheme_of(url)
    if scheme in SENTINEL_SCHEMES:
        parse_sentinel_url(url)
    elif scheme not in PLAIN_SCHEMES:
        raise ValueError("must be a redis://, rediss://, unix:// or redis+sentinel:// URL")


def _host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):  # [::1]:26379
        host, sep, rest = item[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("a Sentinel host in [brackets] must be [address] or [address]:port")
        port_text = rest[1:]
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError("every Sentinel must be host or host:port (an empty host in the list)")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("a Sentinel port must be a number from 1 to 65535")
    return host, int(port_text)


def parse_sentinel_url(url: str) -> SentinelUrl:
    scheme = scheme_of(url)
    if scheme not in SENTINEL_SCHEMES:
        raise ValueError("a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://")
    rest = url.split("://", 1)[1]
    # urlsplit's .hostname/.port cannot read a host list; take the parts by hand.
    netloc, _, after = rest.partition("/")
    path, _, query = after.partition("?")
    if "#" in path or "#" in query:
        raise ValueError("a Sentinel URL takes no #fragment")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon and secret else None
    if not hostlist:
        raise ValueError("a Sentinel URL needs at least one host:port after ://")
    hosts = tuple(_host_port(item.strip()) for item in hostlist.split(","))
    parts = [p for p in path.split("/")] if path else []
    if not parts or not parts[0]:
        raise ValueError("a Sentinel URL needs the service name: redis+sentinel://host:26379/SERVICE_NAME/DB")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError("after the service name a Sentinel URL takes only the database number (/SERVICE_NAME/DB)")
    db = int(parts[1]) if len(parts) == 2 else 0
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"sentinel_password"})
    if unknown:
        raise ValueError(f"a Sentinel URL takes only ?sentinel_password=, not {', '.join(unknown)}")
    sentinel_password = params["sentinel_password"][-1] if params.get("sentinel_password") else None
    return SentinelUrl(hosts=hosts, service=unquote(parts[0]), db=db, username=username, password=password,
                       sentinel_password=sentinel_password or None, ssl=scheme == "rediss+sentinel")


__all__ = ["SentinelUrl", "check_redis_url", "parse_sentinel_url", "scheme_of"]
