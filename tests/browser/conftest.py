"""The console in a real browser: Playwright driving Debian's Chromium (``make browser`` installs it
as root; ``B24NOTIFY_CHROMIUM`` names another binary) against a real ``b24notify up --demo``.

One browser and one demo serve every test of this package, a fresh browser context (no cookies)
each test. Both are package-scoped, not session-scoped: they stop once the browser tests are done
instead of running beside the rest of the suite. A test that fails leaves a screenshot of its page
in its tmp_path; the path is in the failure report ("browser screenshot").
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from redis import Redis

from b24notify.devtools.simulator import SimulatorControl
from tests.browser.console_demo import PASSWORD, ConsoleDemo
from tests.support.portal_user import PortalUser
from tests.support.processes import CliProcess
from tests.support.servers import free_port, wait_for
from tests.support.up import delete_keys, kill_everything, start_up, wait_for_output

FIRST_ALERT_SECONDS = 40.0
TIMEOUT_MS = 10_000  # any one browser action or wait
SCREENSHOT_DIR = pytest.StashKey[Path]()
PAGE_OF_TEST = pytest.StashKey[Page]()


@pytest.fixture(scope="session")
def chromium() -> str:
    path = os.environ.get("B24NOTIFY_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.skip("no Chromium: apt-get install chromium (make browser does it as root)")
    return path


@pytest.fixture(scope="package")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox refuses to run as root, which containers and CI usually are.
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="package")
def demo(redis_url: str) -> Iterator[ConsoleDemo]:
    """``b24notify up --demo`` with a console password, once its first alert reached the portal's chat."""
    key_prefix = f"t{uuid.uuid4().hex[:10]}"
    redis = Redis.from_url(redis_url)
    process = start_up(redis_url, key_prefix, "--demo", "--port", str(free_port()),
                       env={"B24NOTIFY_CONSOLE_PASSWORD": PASSWORD})
    sim: SimulatorControl | None = None
    user: PortalUser | None = None
    try:
        output = wait_for_output(process, "this demo's Redis keys", 40)
        web = _printed(output, r"b24notify: up — web on (http://\S+?)/webhooks/bitrix24")
        sim = SimulatorControl(_printed(output, r"simulated portal at (http://\S+) "), timeout=10.0)
        webhook = _printed(output, r"B24_WEBHOOK_URL=(\S+)")
        user = PortalUser(webhook)
        portal = re.sub(r"^https?://", "", webhook).split("/", 1)[0]
        control = sim
        wait_for(lambda: _alive(process) and control.messages(), FIRST_ALERT_SECONDS,
                 "the demo's first alert did not reach the simulated chat")
        yield ConsoleDemo(process, web, sim, user, portal)
    finally:
        if user is not None:
            user.close()
        if sim is not None:
            sim.close()
        kill_everything(process, key_prefix)
        process.stop()
        delete_keys(redis, key_prefix)
        redis.close()


def _printed(output: str, pattern: str) -> str:
    match = re.search(pattern, output)
    if match is None:
        raise AssertionError(f"`b24notify up --demo` did not print {pattern!r}:\n{output[-4000:]}")
    return match[1]


def _alive(process: CliProcess) -> bool:
    if not process.alive():
        raise AssertionError(f"`b24notify up --demo` exited {process.proc.returncode}:\n{process.output()[-4000:]}")
    return True


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    """A fresh browser context (no cookies), in English, 1280 px wide."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    request.node.stash[SCREENSHOT_DIR] = tmp_path
    request.node.stash[PAGE_OF_TEST] = opened
    try:
        yield opened
    finally:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, Any]:
    """On a failed test (or its setup), a full-page screenshot of its page while it is still open."""
    report = yield
    opened = item.stash.get(PAGE_OF_TEST, None)
    if report.failed and report.when in ("setup", "call") and opened is not None and not opened.is_closed():
        path = item.stash[SCREENSHOT_DIR] / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', item.name)}.png"
        try:
            opened.screenshot(path=str(path), full_page=True)
            saved = f"{path} (page {opened.url})"
        except Exception as exc:  # the report must not lose the test's own failure
            saved = f"not saved: {type(exc).__name__}: {exc}"
        report.sections.append(("browser screenshot", saved))
        print(f"\nbrowser screenshot: {saved}")
    return report
