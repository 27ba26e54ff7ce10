"""App installs (OAuth application mode), kept in Redis so every web and worker process sees them.

One hash per portal, keyed by its domain (``host[:port]``, what events carry as ``auth[domain]``)
and a set of installed portals. The refresh token is single-use (PROTOCOL.md §8): it is only ever
replaced through :meth:`AppRegistry.replace_tokens`, which checks that it still holds the token
the refresh started from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from redis import Redis

from b24notify.keys import Keys, as_text
from b24notify.portals.spec import PortalSpec
from b24notify.settings import Settings, is_loopback_host

# Compare-and-set: new tokens are written only over the refresh token they were made from.
_REPLACE_TOKENS = """
if redis.call('HGET', KEYS[1], 'refresh_token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'access_token', ARGV[2], 'refresh_token', ARGV[3], 'expires', ARGV[4])
return 1
"""


@dataclass(frozen=True)
class AppInstall:
    domain: str  # host[:port], lower case: the portal's key
    member_id: str
    client_endpoint: str  # https://host/rest/ as the OAuth server confirmed it
    application_token: str = field(repr=False)
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires: float = 0.0
    user_id: int = 0  # who installed it: the default chat recipient
    installed_at: float = 0.0

    def to_mapping(self) -> dict[Any, Any]:  # redis-py's hset wants its own key types
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_mapping(cls, raw: Mapping[bytes | str, bytes | str]) -> AppInstall | None:
        data = {as_text(k): as_text(v) for k, v in raw.items()}
        try:
            return cls(
                domain=data["domain"], member_id=data["member_id"], client_endpoint=data["client_endpoint"],
                application_token=data["application_token"], access_token=data["access_token"],
                refresh_token=data["refresh_token"], expires=float(data.get("expires") or 0),
                user_id=int(data.get("user_id") or 0), installed_at=float(data.get("installed_at") or 0),
            )
        except (KeyError, ValueError):
            return None

    def portal_spec(self, settings: Settings) -> PortalSpec:
        parts = urlsplit(self.client_endpoint)
        chat = settings.notify_chat or (str(self.user_id) if self.user_id else None)
        return PortalSpec(
            key=self.domain, portal_url=f"{parts.scheme}://{parts.netloc}",
            application_token=self.application_token, member_id=self.member_id,
            rate_limit=settings.b24_rate_limit, notify_chat=chat, notify_email=tuple(settings.notify_email),
        )


def endpoint_problem(client_endpoint: str, domain: str) -> str | None:
    """Why a client endpoint cannot be trusted for ``domain``, or None when it can."""
    parts = urlsplit(client_endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "client_endpoint is not a URL"
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return "client_endpoint is not https"
    if parts.netloc.lower() != domain.lower() or parts.path != "/rest/" or parts.query or parts.username:
        return "client_endpoint is not https://DOMAIN/rest/ of the installing portal"
    return None


class AppRegistry:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def get(self, portal: str) -> AppInstall | None:
        raw = self.redis.hgetall(self.keys.app_install(portal))
        return AppInstall.from_mapping(raw) if raw else None

    def portals(self) -> list[str]:
        return sorted(as_text(m) for m in self.redis.smembers(self.keys.app_installs()))

    def save(self, install: AppInstall) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(self.keys.app_install(install.domain))
        pipe.hset(self.keys.app_install(install.domain), mapping=install.to_mapping())
        pipe.sadd(self.keys.app_installs(), install.domain)
        pipe.execute()

    def remove(self, portal: str) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(self.keys.app_install(portal))
        pipe.srem(self.keys.app_installs(), portal)
        pipe.execute()

    def replace_tokens(self, install: AppInstall, access_token: str, refresh_token: str, expires: float) -> bool:
        done = self.redis.eval(_REPLACE_TOKENS, 1, self.keys.app_install(install.domain),
                               install.refresh_token, access_token, refresh_token, repr(expires))
        return bool(done)

