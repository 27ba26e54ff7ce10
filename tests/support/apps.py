"""App installs made directly in Redis, as the web stores them after ONAPPINSTALL."""

from __future__ import annotations

from redis import Redis

from b24notify.devtools.simulator import OAuthAuthority, RunningSimulator
from b24notify.keys import Keys
from b24notify.portals.registry import AppInstall, AppRegistry


def install_directly(redis: Redis, keys: Keys, sim: RunningSimulator, authority: OAuthAuthority) -> AppInstall:
    """An install as the web would store it, without the web (for the refresh tests)."""
    tokens = authority.issue(sim.config.member_id, sim.domain, sim.client_endpoint, 1)
    install = AppInstall(sim.domain, sim.config.member_id, sim.client_endpoint, "app-token",
                         tokens["access_token"], tokens["refresh_token"], float(tokens["expires"]), 1)
    AppRegistry(redis, keys).save(install)
    return install
