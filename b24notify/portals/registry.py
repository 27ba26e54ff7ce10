"""App installs (OAuth application mode), kept in Redis so every web and worker process sees them.

One hash per portal, keyed by its domain (``host[:port]``, what events carry as ``auth[domain]``)
and a set of installed portals. The refresh token is single-use (docs/protocol.md §8): it is only ever
replaced through :meth:`AppRegistry.replace_tokens`, which checks that it still holds the token
the refresh started from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from redis import Redis

from b24notify.keys import Keys, as_text
from b24notify.metrics import Counters
from b24notify.portals.spec import PortalSpec
from b24notify.settings import Settings, is_loopback_host

log = logging.getLogger(__name__)

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

    def remove(self, portal: str, at: float | None = None) -> None:
        """The app left the portal (``ONAPPUNINSTALL``): forget the install and what we kept about
        the portal now; its per-task state follows within minutes (``RemovedPortals``)."""
        pipe = self.redis.pipeline()
        pipe.delete(self.keys.app_install(portal), *portal_state_keys(self.keys, portal))
        pipe.srem(self.keys.app_installs(), portal)
        pipe.hset(self.keys.removed_portals(), portal, removal_mark(time.time() if at is None else at))
        pipe.execute()

    def replace_tokens(self, install: AppInstall, access_token: str, refresh_token: str, expires: float) -> bool:
        done = self.redis.eval(_REPLACE_TOKENS, 1, self.keys.app_install(install.domain),
                               install.refresh_token, access_token, refresh_token, repr(expires))
        return bool(done)



def portal_state_keys(keys: Keys, portal: str) -> list[str]:
    """Every key that belongs to one portal as a whole (not per task): what an uninstall deletes
    at once. A reinstall starts from nothing: results pinned while the app was away are a silent
    baseline (a new ``connected_at``), like at the first install."""
    operating = keys.operating(portal)
    return [
        keys.connected_at(portal), keys.halted(portal),
        keys.watch_next(portal), keys.watch_active(portal), keys.watch_status(portal), keys.watch_synced(portal),
        keys.sweep_last(portal), keys.sweep_cursor(portal), keys.sweep_lock(portal),
        keys.budget(portal), keys.reconcile_budget(portal), keys.reconcile_budget(portal) + ":sweep",
        f"{operating}:reset_at", keys.oauth_lock(portal), keys.oauth_lock(portal) + ":binding",
    ]


def removal_mark(at: float, cursor: int = 0) -> str:
    return f"{at!r}|{cursor}"


class RemovedPortals:
    """Portals whose app was uninstalled and whose per-task state (results and tombstone hashes,
    one per task ever synced) and metrics are still to be removed.

    The web only marks the portal (``AppRegistry.remove``): a SCAN of the keyspace is no work for
    the answer to a webhook. A worker's upkeep calls ``clean`` once a minute; it goes on from its
    SCAN cursor, a slice of the keyspace at a time, so a huge Redis costs a few minutes, never a
    stall. Results hashes expire on their own anyway (B24NOTIFY_RESULTS_KEEP_DAYS): this makes
    an uninstall a clean cut instead of a month's wait. A portal installed again meanwhile is left
    alone from then on (what is left of the old install expires).

    The mark stays until ``GRACE_SECONDS`` after the uninstall, the SCAN starting over each time:
    a worker serves a portal it has built up to 30 s after its uninstall (``SPEC_RECHECK_SECONDS``)
    and a job runs for at most its lease, so the last pass comes after the last job that could
    have written for the portal."""

    GRACE_SECONDS = 300.0

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def clean(self, now: float | None = None, scan_calls: int = 20, count: int = 1000) -> int:
        """Go on with every removed portal for up to ``scan_calls`` SCAN steps each. Returns the
        keys deleted."""
        now = time.time() if now is None else now
        deleted = 0
        for raw_portal, raw_mark in self.redis.hgetall(self.keys.removed_portals()).items():
            portal, mark = as_text(raw_portal), as_text(raw_mark)
            at_text, _, cursor_text = mark.partition("|")
            at, cursor = float(at_text), int(cursor_text or 0)
            if self.redis.sismember(self.keys.app_installs(), portal):
                self.redis.hdel(self.keys.removed_portals(), portal)
                continue
            for _ in range(scan_calls):
                cursor, found = self.redis.scan(cursor, match=self.keys.portal_scan_pattern(portal),
                                              count=count)
                mine = [k for k in (as_text(key) for key in found) if self._is_task_state(k, portal)]
                if mine:
                    deleted += int(self.redis.delete(*mine))
                if cursor == 0:
                    break
            if cursor != 0:
                self.redis.hset(self.keys.removed_portals(), portal, removal_mark(at, cursor))
                continue
            # Once more: a job that was running during the uninstall may have touched them since.
            deleted += int(self.redis.delete(*portal_state_keys(self.keys, portal)))
            deleted += Counters(self.redis, self.keys).forget_portal(portal)
            if now < at + self.GRACE_SECONDS:
                self.redis.hset(self.keys.removed_portals(), portal, removal_mark(at))  # once more, later
                continue
            self.redis.hdel(self.keys.removed_portals(), portal)
            log.info("event=portal.cleaned portal=%s", portal)
        return deleted

    def _is_task_state(self, key: str, portal: str) -> bool:
        return any(key.startswith(head) and key[len(head):].isdigit() for head in self.keys.task_state_heads(portal))
