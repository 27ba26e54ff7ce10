"""`b24notify worker-alive`, the worker container's healthcheck: true only while a worker process
on this host runs (its RQ heartbeat is fresh), not merely while Redis answers."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.processes import CliProcess
from tests.support.servers import wait_for


def alive(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("B24", "NOTIFY_", "SMTP_", "EMAIL_"))}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "b24notify.cli", "worker-alive"], env=full, text=True,
                          capture_output=True, timeout=30)


def test_worker_alive_follows_the_worker_process(redis_url, key_prefix, redis, simulator):
    env = {"REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": key_prefix, "B24NOTIFY_QUEUE": f"{key_prefix}-q",
           "B24_WEBHOOK_URL": simulator.webhook_url, "B24_APPLICATION_TOKEN": "t", "NOTIFY_CHAT": "chat1"}
    before = alive(env)
    assert before.returncode == 1 and "no live worker" in before.stdout, before
    worker = CliProcess(["worker", "--name", f"{key_prefix}-w"], env)
    try:
        wait_for(lambda: alive(env).returncode == 0, 30, "worker-alive never saw the worker")
        assert f"worker {key_prefix}-w (pid {worker.pid}) alive" in alive(env).stdout
    finally:
        assert worker.stop() in (0, -15), worker.output()[-2000:]
    after = alive(env)
    assert after.returncode == 1, after  # a stopped worker is not alive, though Redis still answers
    assert alive({**env, "REDIS_URL": "redis://127.0.0.1:9/0"}).returncode == 1
