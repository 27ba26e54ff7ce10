"""App installs (OAuth application mode), kept in Redis so every web and worker process sees them.

One hash per portal, keyed by its domain (``host[:port]``, what events carry as ``auth[domain]``)
and a set of installed portals. Every write is one Lua script, whoever makes it: an install
(``lua/app_install.lua``: also clears a halt, sets ``connected_at`` once, refuses another
``member_id``), an uninstall (``lua/app_uninstall.lua``) and a token refresh
(``lua/replace_tokens.lua``). :class:`AppRegistry` calls them for the workers and tools,
:class:`AsyncAppRegistry` for the web, with the same names from the same functions
(:func:`install_call`, :func:`uninstall_call`). The refresh token is single-use (docs/protocol.md
§8): it is only ever replaced by a compare-and-set on the token the refresh started from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from b24notify.keys import Keys, as_text
from b24notify.metrics import Counters
from b24notify.portals.spec import PortalFile, PortalSpec, app_portal
from b24notify.scripts import APP_INSTALL, APP_UNINSTALL, REPLACE_TOKENS
from b24notify.settings import Settings, is_loopback_host

log = logging.getLogger(__name__)


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

    def portal_spec(self, settings: Settings, defaults: PortalFile | None = None) -> PortalSpec:
        """``defaults``: the top level of B24NOTIFY_CONFIG (language, routes), read once by the caller."""
        return app_portal(settings, domain=self.domain, client_endpoint=self.client_endpoint,
                          application_token=self.application_token, member_id=self.member_id,
                          user_id=self.user_id, defaults=defaults)


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


Built = tuple[list[Any], list[Any]]


def install_call(keys: Keys, install: AppInstall, now: float) -> Built:
    """``app_install.lua``'s KEYS and ARGV for storing ``install`` (both registries run it)."""
    portal = install.domain
    return APP_INSTALL.keys_args(
        install=keys.app_install(portal), installs=keys.app_installs(), halted=keys.halted(portal),
        connected_at=keys.connected_at(portal), domain=portal, member_id=install.member_id,
        connected_stamp=datetime.fromtimestamp(now, UTC).isoformat(),
        fields=[part for pair in install.to_mapping().items() for part in pair],
    )


def uninstall_call(keys: Keys, portal: str, at: float) -> Built:
    """``app_uninstall.lua``'s KEYS and ARGV for forgetting ``portal``."""
    return APP_UNINSTALL.keys_args(
        install=keys.app_install(portal), installs=keys.app_installs(), removed=keys.removed_portals(),
        portal_state=portal_state_keys(keys, portal), domain=portal, mark=removal_mark(at))


class AppRegistry:
    """The installs, for the workers and the command line (a sync client)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def get(self, portal: str) -> AppInstall | None:
        raw = self.redis.hgetall(self.keys.app_install(portal))
        return AppInstall.from_mapping(raw) if raw else None

    def portals(self) -> list[str]:
        return sorted(as_text(m) for m in self.redis.smembers(self.keys.app_installs()))

    def save(self, install: AppInstall, now: float | None = None) -> bool:
        """Store an install. False (nothing written): another member_id holds this domain."""
        call = install_call(self.keys, install, time.time() if now is None else now)
        return bool(APP_INSTALL.on(self.redis).run(call))

    def remove(self, portal: str, at: float | None = None) -> bool:
        """The app left the portal (``ONAPPUNINSTALL``): forget the install and what we kept about
        the portal now; its per-task state follows within minutes (``RemovedPortals``)."""
        call = uninstall_call(self.keys, portal, time.time() if at is None else at)
        return bool(APP_UNINSTALL.on(self.redis).run(call))

    def replace_tokens(self, install: AppInstall, access_token: str, refresh_token: str, expires: float) -> bool:
        done = REPLACE_TOKENS.on(self.redis)(
            install=self.keys.app_install(install.domain), old_refresh_token=install.refresh_token,
            access_token=access_token, refresh_token=refresh_token, expires=repr(expires))
        return bool(done)


class AsyncAppRegistry:
    """The same installs for the web (an asyncio client): the same scripts and names."""

    def __init__(self, redis: AsyncRedis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def credentials(self, portal: str) -> tuple[str, str | None] | None:
        """What an event from ``portal`` must carry: its application token and member_id."""
        token, member = await self.redis.hmget(self.keys.app_install(portal), ["application_token", "member_id"])
        if token is None:
            return None
        return as_text(token), as_text(member) if member is not None else None

    async def member_id(self, portal: str) -> str | None:
        member = await self.redis.hget(self.keys.app_install(portal), "member_id")
        return as_text(member) if member is not None else None

    async def portals(self) -> list[str]:
        return sorted(as_text(m) for m in await self.redis.smembers(self.keys.app_installs()))

    async def save(self, install: AppInstall, now: float | None = None) -> bool:
        call = install_call(self.keys, install, time.time() if now is None else now)
        return bool(await APP_INSTALL.on_async(self.redis).run(call))

    async def remove(self, portal: str, at: float | None = None) -> bool:
        call = uninstall_call(self.keys, portal, time.time() if at is None else at)
        return bool(await APP_UNINSTALL.on_async(self.redis).run(call))


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
        keys.prefs(portal), keys.trace(portal),
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
