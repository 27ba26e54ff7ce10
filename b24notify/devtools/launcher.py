"""``b24notify up``: the whole product on one machine — web, workers (each with its dispatcher and
RQ's scheduler) — and, when no portal is configured, the demo: the simulator with scripted task
activity and a local SMTP sink whose messages are printed. Ctrl-C (or SIGTERM) stops everything
cleanly, however many times it is pressed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from types import FrameType
from typing import Any

import httpx

from b24notify.devtools.embedded_redis import EmbeddedRedisError, default_data_dir, redis_answers, start_embedded_redis
from b24notify.devtools.ports import free_port, port_is_free
from b24notify.logs import setup_logging
from b24notify.portals.spec import require_channels
from b24notify.settings import Settings, load_settings

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000
STOP_GRACE_SECONDS = 20.0
WEB_START_SECONDS = 30.0


class PortBusy(Exception):
    """The web's port is taken; the message says which and how to choose another."""


class StopSignals:
    """SIGINT and SIGTERM as a stop request that the main loop waits on.

    A Python signal handler runs in the main thread between two bytecodes, possibly inside another
    handler. So the handlers here only count and write a byte to a pipe: one that takes a lock
    (``threading.Event.set()`` does) deadlocks when a second signal lands while the first handler
    holds that lock, as ``timeout 120 make run`` did one time in four."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self.received = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        with contextlib.suppress(BlockingIOError):  # a full pipe has a wake-up waiting already
            os.write(self._write, b"!")

    @property
    def requested(self) -> bool:
        return self.received > 0

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` s, waking at once on a signal; True once a stop was requested."""
        if not self.requested:
            select.select([self._read], [], [], timeout)
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass
        return self.requested

    def close(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        os.close(self._read)
        os.close(self._write)


class Fleet:
    """The web and worker processes: ``b24notify serve`` and ``b24notify worker`` children."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self.children: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: list[str]) -> None:
        self.children.append(subprocess.Popen([sys.executable, "-m", "b24notify.cli", *args], env=self._env))

    def dead(self) -> subprocess.Popen[bytes] | None:
        return next((child for child in self.children if child.poll() is not None), None)

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # web: graceful; RQ worker: warm shutdown
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("event=up.child_killed pid=%d after=%gs", child.pid, STOP_GRACE_SECONDS)
                child.kill()
                child.wait()


def choose_port(host: str, requested: int | None, *, demo: bool) -> int:
    """The web's port, checked before anything starts. A port asked for must be free. Without one,
    8000; if that is busy, the demo takes any free port (only its own simulator posts to it), while a
    real portal's outgoing webhook points at a fixed address, so there it is an error."""
    if requested is not None:
        if port_is_free(host, requested):
            return requested
        raise PortBusy(f"port {requested} on {host} is busy (another `b24notify up`, or another server); "
                       "choose another with `b24notify up --port N` (make run PORT=N)")
    if port_is_free(host, DEFAULT_PORT):
        return DEFAULT_PORT
    if demo:
        port = free_port(host)
        print(f"b24notify: port {DEFAULT_PORT} is busy; the demo's web takes port {port} "
              "(`--port N` chooses one)", flush=True)
        return port
    raise PortBusy(f"port {DEFAULT_PORT} on {host} is busy (another `b24notify up`, or another server); "
                   "free it, or choose another with `b24notify up --port N` (make run PORT=N) and point "
                   "the portal's outgoing webhook there")


def _connect_host(host: str) -> str:
    """Where this machine reaches a server bound to ``host``; bracketed for a URL if IPv6."""
    local = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{local}]" if ":" in local else local


def wait_until_answering(url: str, fleet: Fleet, signals: StopSignals) -> bool:
    """Wait for the web to answer ``url`` (``/healthz``); False if a child died, a stop was asked
    for, or it took longer than WEB_START_SECONDS."""
    deadline = time.monotonic() + WEB_START_SECONDS
    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if fleet.dead() is not None:
                return False
            try:
                if http.get(url).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            if signals.wait(0.1):
                return False
    log.error("event=up.web_not_answering url=%s after=%gs", url, WEB_START_SECONDS)
    return False


def run_up(*, env_file: str | None, host: str, port: int | None, workers: int, demo: bool) -> int:
    settings = load_settings(env_file=env_file)
    setup_logging(settings.b24notify_log_level)
    demo = demo or not (settings.b24_webhook_url or settings.b24notify_config or settings.app_mode)
    if not demo:
        require_channels(settings)
    try:
        port = choose_port(host, port, demo=demo)
    except PortBusy as exc:
        print(f"b24notify: {exc}", file=sys.stderr, flush=True)
        return 2
    signals = StopSignals()
    signals.install()
    try:
        code = _run(settings, host=host, port=port, workers=workers, demo=demo, signals=signals)
    except EmbeddedRedisError as exc:
        print(f"b24notify: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signals.close()
    print("b24notify: stopped", flush=True)
    return code


def _run(settings: Settings, *, host: str, port: int, workers: int, demo: bool, signals: StopSignals) -> int:
    env = dict(os.environ)
    with ExitStack() as stack:
        redis_url = settings.redis_url
        if not redis_answers(redis_url):
            data_dir = None if demo else settings.b24notify_data_dir or default_data_dir(os.environ)
            embedded = start_embedded_redis(redis_url, data_dir)
            stack.callback(embedded.stop)
            env["REDIS_URL"] = redis_url = embedded.url
            kept = ("its data kept across restarts in " if embedded.persistent
                    else "demo: its data is thrown away on exit, in ") + str(embedded.data_dir)
            print(f"b24notify: no Redis at REDIS_URL; started redis-server on {redis_url} ({kept})", flush=True)
        web = f"http://{_connect_host(host)}:{port}"
        running_demo = None
        if demo:
            from b24notify.devtools.demo import start_demo

            running_demo = start_demo(stack, settings=settings, redis_url=redis_url,
                                      handler_url=f"{web}/webhooks/bitrix24")
            env.update(running_demo.env)
        names = running_demo.namespace.queue if running_demo else f"up-{os.getpid()}"
        fleet = Fleet(env)
        stack.callback(fleet.stop)
        fleet.spawn(["serve", "--host", host, "--port", str(port)])
        for i in range(workers):
            fleet.spawn(["worker", "--name", f"{names}-{i}"])
        if running_demo is not None:
            stack.callback(running_demo.stop_activity)  # before the web stops (stack order)
        code = 0
        if wait_until_answering(f"{web}/healthz", fleet, signals):
            print(f"b24notify: up — web on {web}/webhooks/bitrix24, {workers} worker(s); Ctrl-C stops", flush=True)
            if running_demo is not None:
                running_demo.start_activity()
                running_demo.announce(web)
            while not signals.wait(0.5):
                if fleet.dead() is not None:
                    break
        dead = fleet.dead()
        if dead is not None and not signals.requested:
            log.error("event=up.child_exited pid=%d code=%s", dead.pid, dead.returncode)
            code = 1
        elif not signals.requested:
            code = 1  # the web never answered (logged above)
        print(f"b24notify: stopping — workers finish the jobs they hold ({STOP_GRACE_SECONDS:g} s at most)",
              flush=True)
        return code
