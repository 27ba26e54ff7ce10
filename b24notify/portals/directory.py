"""Which portals this process serves, looked up by key (``host[:port]``).

Webhook portals are fixed at start (env and TOML file); app installs are read from Redis, so a
portal installed or uninstalled through any web process is seen by every worker.
"""

from __future__ import annotations

from redis import Redis

from b24notify.keys import Keys
from b24notify.portals.registry import AppInstall, AppRegistry
from b24notify.portals.spec import PortalSpec, portal_file, webhook_portals
from b24notify.settings import Settings


class PortalDirectory:
    def __init__(self, settings: Settings, redis: Redis, keys: Keys) -> None:
        self.settings = settings
        self.static = {spec.key: spec for spec in webhook_portals(settings)}
        self.defaults = portal_file(settings)  # read once: app installs take its top level
        self.registry = AppRegistry(redis, keys) if settings.app_mode else None

    def get(self, portal: str) -> tuple[PortalSpec, AppInstall | None] | None:
        spec = self.static.get(portal)
        if spec is not None:
            return spec, None
        if self.registry is None:
            return None
        install = self.registry.get(portal)
        if install is None:
            return None
        return install.portal_spec(self.settings, self.defaults), install

    def portals(self) -> list[str]:
        installed = self.registry.portals() if self.registry is not None else []
        return list(self.static) + [p for p in installed if p not in self.static]
