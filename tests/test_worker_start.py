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
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue, SimpleWorker, Worker

from b24notify.workers.context import WorkerContexts
from b24notify.workers.worker import B24Worker
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


def _count(text: str) -> int:
    return len(text)


def test_a_heartbeat_lost_right_after_a_job_was_dequeued_does_not_lose_the_job(redis, key_prefix, monkeypatch):
    """RQ beats once more between popping a job and running it. Redis gone at that instant (a
    failover: microseconds wide, so the fault is injected into that one beat) ended RQ's loop with
    the job popped and never run, and its claims stayed leased until their lease ran out."""
    queue = Queue(f"{key_prefix}-hb", connection=redis)
    job = queue.enqueue(_count, "abc")
    worker = B24Worker([queue], connection=redis, name=f"{key_prefix}-hb")
    worker.contexts = WorkerContexts.__new__(WorkerContexts)  # perform_job binds it; this job needs none
    popped: list[object] = []
    rq_dequeue, rq_heartbeat = Queue.dequeue_any, SimpleWorker.heartbeat

    def dequeue_any(*args: object, **kwargs: object) -> object:
        result = rq_dequeue(*args, **kwargs)  # type: ignore[arg-type]
        popped.append(result)
        return result

    def heartbeat(self: B24Worker, timeout: int | None = None, pipeline: object = None) -> object:
        if popped and popped[-1] is not None and pipeline is None:
            popped.append(None)  # once: the beat right after the pop
            raise RedisConnectionError("Error 111 connecting: Connection refused.")
        return rq_heartbeat(self, timeout, pipeline)

    monkeypatch.setattr(Queue, "dequeue_any", dequeue_any)
    monkeypatch.setattr(SimpleWorker, "heartbeat", heartbeat)
    worker.work(burst=True)
    assert popped[-1] is None, "the fault was not injected"
    assert job.get_status(refresh=True) == "finished"
    assert job.return_value() == 3
