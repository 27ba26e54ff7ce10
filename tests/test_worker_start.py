"""A worker started while Redis does not answer (a failover with no primary yet, Redis starting
after the workers) waits for it instead of exiting into a supervisor's crash loop, and a stop
signal during that wait ends it cleanly."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Worker

from tests.support.processes import CliProcess
from tests.support.servers import free_port, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def late_redis() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A port with no Redis on it yet; the test starts one there with ``start_redis``."""
    started: list[subprocess.Popen[bytes]] = []
    yield free_port(), started
    for process in started:
        process.kill()
        process.wait(timeout=10)


def start_redis(port: int, started: list[subprocess.Popen[bytes]]) -> None:
    folder = tempfile.mkdtemp(prefix="b24notify-late-redis-")
    started.append(subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--dir", folder],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def worker_env(port: int, key_prefix: str) -> dict[str, str]:
    return {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "B24NOTIFY_KEY_PREFIX": key_prefix,
            "B24NOTIFY_QUEUE": f"{key_prefix}-q", "B24_WEBHOOK_URL": "http://127.0.0.1:9/rest/1/secret0000/",
            "B24_APPLICATION_TOKEN": "token", "NOTIFY_CHAT": "chat1", "B24NOTIFY_LOG_LEVEL": "INFO"}


def test_a_worker_started_before_redis_waits_for_it_then_works(late_redis, key_prefix):
    port, started = late_redis
    worker = CliProcess(["worker", "--name", f"{key_prefix}-late"], worker_env(port, key_prefix))
    try:
        wait_for(lambda: worker.output().count("event=worker.waiting_for_redis") >= 2, 15,
                 "the worker did not say it waits for Redis")
        assert worker.alive(), worker.output()
        start_redis(port, started)
        wait_for(lambda: "event=worker.start" in worker.output(), 30, "the worker did not start once Redis answered")
        client = Redis(port=port)
        wait_for(lambda: [w.name for w in Worker.all(connection=client)] == [f"{key_prefix}-late"], 10,
                 "the worker did not register with RQ")
        client.close()
        assert worker.alive()
    finally:
        code = worker.stop()
    assert code == 0, worker.output()


def test_a_stop_signal_while_waiting_for_redis_ends_the_worker(late_redis, key_prefix):
    port, _ = late_redis
    worker = CliProcess(["worker"], worker_env(port, key_prefix))
    wait_for(lambda: "event=worker.waiting_for_redis" in worker.output(), 15, "the worker did not wait for Redis")
    asked = time.monotonic()
    assert worker.stop() == 0, worker.output()
    assert time.monotonic() - asked < 5  # the backoff's sleep does not hold the stop
    assert "Traceback" not in worker.output()
