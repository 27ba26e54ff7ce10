"""``b24notify up``: the whole product on one machine — web, workers (each with its dispatcher and
RQ's scheduler) — and, when no portal is configured, the demo: the simulator with scripted task
activity and a local SMTP sink that prints the mails. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from types import FrameType

from b24notify.embedded_redis import redis_answers, start_embedded_redis
from b24notify.logs import setup_logging
from b24notify.settings import load_settings

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 20.0


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "b24notify.cli", *args], env=env)


def run_up(*, env_file: str | None, host: str, port: int, workers: int, demo: bool) -> int:
    settings = load_settings(env_file=env_file)
    setup_logging(settings.b24notify_log_level)
    env = dict(os.environ)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    with ExitStack() as stack:
        if not redis_answers(settings.redis_url):
            embedded = start_embedded_redis(settings.redis_url)
            stack.callback(embedded.stop)
            env["REDIS_URL"] = embedded.url
            print(f"b24notify: no Redis at REDIS_URL; started redis-server on {embedded.url}", flush=True)
        configured = settings.b24_webhook_url or settings.b24notify_config or settings.app_mode
        if demo or not configured:
            from b24notify.demo import start_demo

            env.update(start_demo(stack, host=host, port=port, stop=stop))
        else:
            settings.require_channels()
        children = [_spawn(["serve", "--host", host, "--port", str(port)], env)]
        children += [_spawn(["worker", "--name", f"up-{os.getpid()}-{i}"], env) for i in range(workers)]
        print(f"b24notify: up — web on http://{host}:{port}/webhooks/bitrix24, {workers} worker(s); "
              "Ctrl-C stops", flush=True)
        exit_code = 0
        while not stop.is_set():
            dead = [c for c in children if c.poll() is not None]
            if dead:
                log.error("event=up.child_exited pid=%d code=%s", dead[0].pid, dead[0].returncode)
                exit_code = 1
                break
            stop.wait(0.5)
        _stop_children(children)
        return exit_code


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)  # web: graceful; RQ worker: warm shutdown
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
