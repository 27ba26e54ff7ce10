"""What the browser tests share besides fixtures: the demo they drive and how they wait for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from playwright.sync_api import Page

from b24notify.devtools.simulator import SimulatorControl
from tests.support.portal_user import PortalUser
from tests.support.processes import CliProcess
from tests.support.servers import wait_for

PASSWORD = "browser-test-password"


@dataclass
class ConsoleDemo:
    """A running ``b24notify up --demo`` with the console on."""

    process: CliProcess
    web: str  # http://127.0.0.1:PORT
    sim: SimulatorControl  # the demo's simulated portal (its /_sim/ control API)
    user: PortalUser  # someone working in that portal, through the demo's own webhook
    portal: str  # the portal's key in the console (host:port of the webhook)

    def url(self, path: str) -> str:
        return f"{self.web}{path}"

def shown(page: Page, url: str, check: Callable[[Page], Any], timeout: float, what: str) -> Any:
    """Open ``url`` again and again until ``check(page)`` is truthy (the console is server-rendered:
    what changes behind it shows on the next load)."""

    def loaded() -> Any:
        page.goto(url)
        return check(page)

    return wait_for(loaded, timeout, what, interval=0.3)
