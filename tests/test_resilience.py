"""Stopping and restarting things under the fleet: SIGTERM to a worker in the middle of a job, and
a Redis restart (AOF on) during a run."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from rq.registry import StartedJobRegistry

from b24notify.devtools.simulator import RunningSimulator, SimulatorConfig
from b24notify.devtools.smtp_sink import SmtpSink
from b24notify.keys import task_member
from b24notify.workers.context import WorkerContexts, bind_contexts, unbind_contexts
from b24notify.workers.jobs import run_deliveries, run_sync
from tests.support.pipeline import sync
from tests.support.portal_user import PortalUser
from tests.support.processes import CliProcess
from tests.support.servers import free_port, wait_for

pytestmark = pytest.mark.e2e



def status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def fleet_env(redis_url: str, prefix: str, sim: RunningSimulator, sink: SmtpSink) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": prefix, "B24NOTIFY_QUEUE": f"{prefix}-q",
        "B24_WEBHOOK_URL": sim.webhook_url, "B24_APPLICATION_TOKEN": sim.config.application_token,
        "NOTIFY_CHAT": "chat42", "NOTIFY_EMAIL": "team@example.com", "SMTP_URL": sink.url,
        "EMAIL_FROM": "b24notify@example.com", "B24NOTIFY_DEBOUNCE_SECONDS": "0.2",
        "B24NOTIFY_DELIVERY_RETRY_SECONDS": "2,2,2,2,2", "B24NOTIFY_LOG_LEVEL": "INFO",
    }


def test_sigterm_during_a_job_lets_it_finish_and_loses_nothing(redis_url, key_prefix, redis):
    web_port = free_port()
    config = SimulatorConfig(handler_url=f"http://127.0.0.1:{web_port}/webhooks/bitrix24", bucket_capacity=0)
    with SmtpSink() as sink, RunningSimulator(config) as sim:
        # No reconciliation here: its sweep would sync the task on its own and could take the slow
        # call (or leave a claim queued) at a moment the test does not control.
        env = {**fleet_env(redis_url, key_prefix, sim, sink), "B24_RECONCILE_SHARE": "0"}
        web = CliProcess(["serve", "--port", str(web_port)], env)
        wait_for(lambda: status(f"http://127.0.0.1:{web_port}/healthz") == 200, 20, "web did not start")
        first = CliProcess(["worker", "--name", f"{key_prefix}-a"], env)
        user = PortalUser(sim.webhook_url)
        second = None
        try:
            task = user.add_task("Slow portal")
            sim.control.wait_events()
            wait_for(lambda: redis.exists(f"{key_prefix}:results:{sim.domain}:{task}"), 20, "first sync")
            # The next result-list call takes 3 s: long enough to stop the worker in the middle.
            sim.control.add_faults({"method": "tasks.task.result.list", "network": "delay", "delay_seconds": 3,
                                    "count": 1})
            user.comment(task, "Signed", as_result=True)
            # Claimed is not enough: the job must have left the RQ queue and be running in the worker.
            started = StartedJobRegistry(env["B24NOTIFY_QUEUE"], connection=redis)
            wait_for(lambda: redis.zcard(f"{key_prefix}:lease:tasks") == 1 and started.count >= 1, 20,
                     "the sync did not start")
            first.proc.send_signal(signal.SIGTERM)
            assert first.proc.wait(timeout=30) == 0
            # The job that was running when SIGTERM came finished: the new result is stored, and its
            # notifications were sent or wait in the outbox.
            assert redis.zcard(f"{key_prefix}:lease:tasks") == 0
            assert redis.hlen(f"{key_prefix}:results:{sim.domain}:{task}") == 2  # `_known` + the result
            queued = redis.zcard(f"{key_prefix}:due:deliveries") + redis.zcard(f"{key_prefix}:lease:deliveries")
            assert queued + len(sim.control.messages()) + len(sink.messages) >= 2
            second = CliProcess(["worker", "--name", f"{key_prefix}-b"], env)
            wait_for(lambda: len(sim.control.messages()) >= 1, 30, "no chat message after the restart")
            sink.wait_for(1, timeout=30)
            time.sleep(1)
            assert len(sim.control.messages()) == 1 and len(sink.messages) == 1
        finally:
            for proc in (first, second, web):
                if proc is not None:
                    proc.stop()
            user.close()


class OwnRedis:
    """A redis-server of the test's own (AOF on), so the test may stop and start it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="b24notify-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed for this test"
        self.proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
                                      "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _pings(self.url), 10, "redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)


def _pings(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


def test_redis_restart_keeps_queued_work_and_everyone_reconnects(own_redis, key_prefix):
    web_port = free_port()
    config = SimulatorConfig(handler_url=f"http://127.0.0.1:{web_port}/webhooks/bitrix24", bucket_capacity=0)
    with SmtpSink() as sink, RunningSimulator(config) as sim:
        env = fleet_env(own_redis.url, key_prefix, sim, sink)
        web = CliProcess(["serve", "--port", str(web_port)], env)
        ready = f"http://127.0.0.1:{web_port}/readyz"
        wait_for(lambda: status(ready) == 200, 20, "web did not start")
        worker = CliProcess(["worker", "--name", f"{key_prefix}-w"], env)
        user = PortalUser(sim.webhook_url)
        try:
            task = user.add_task("Survives a restart")
            sim.control.wait_events()
            time.sleep(1.2)  # results are stamped to the second; keep this one after the connection
            sink.refuse_next(1, code=451)  # the mail waits for a retry, queued in Redis
            user.comment(task, "Done", as_result=True)
            wait_for(lambda: len(sim.control.messages()) == 1, 30, "no chat message")
            client = Redis.from_url(own_redis.url)
            wait_for(lambda: client.zcard(f"{key_prefix}:due:deliveries") == 1, 10, "the mail retry is not queued")
            client.close()
            own_redis.stop()
            wait_for(lambda: status(ready) == 503, 10, "/readyz did not report the outage")
            time.sleep(1)
            own_redis.start()  # same port, same AOF directory
            wait_for(lambda: status(ready) == 200, 20, "/readyz did not recover")
            sink.wait_for(1, timeout=60)  # the queued retry survived the restart and went out
            user.comment(task, "Another one", as_result=True)  # new work after the restart
            wait_for(lambda: len(sim.control.messages()) == 2, 60, "no chat message after the restart")
            sink.wait_for(2, timeout=30)
            assert worker.alive() and web.alive()
        finally:
            worker.stop()
            web.stop()
            user.close()


@pytest.mark.parametrize("job", ["sync", "delivery"])
def test_a_job_that_loses_redis_hands_its_claims_back_once_redis_answers(own_redis, make_settings, simulator, user,
                                                                         job):
    """Redis gone for longer than the client's retries under a running job: the job ends with the
    error, and its claims are due again as soon as Redis answers -- not leased until the lease runs
    out (60 s here, 120 s by default) as they were."""
    settings = make_settings(redis_url=own_redis.url, b24_webhook_url=simulator.webhook_url,
                             b24_application_token=simulator.config.application_token, notify_chat="chat42")
    client = Redis.from_url(own_redis.url, retry=Retry(NoBackoff(), 1), socket_timeout=2)
    contexts = WorkerContexts(settings, client, serving=True)
    ctx = contexts.get(settings.portal)
    assert ctx is not None
    task = user.add_task("Outage")
    if job == "sync":
        member, due, run = task_member(ctx.portal, task), ctx.tasks, run_sync
    else:
        user.comment(task, "Done", as_result=True)
        ctx.redis.set(ctx.keys.connected_at(ctx.portal), "2000-01-01T00:00:00+00:00")  # the result is news
        outcome = sync(ctx, task)
        member, due, run = outcome.notices[0].key, ctx.deliveries, run_deliveries
    due.schedule(member, at=0)
    (claim,) = due.claim(1, 60, only=member)
    own_redis.stop()
    restart = threading.Timer(2.0, own_redis.start)
    restart.start()
    token = bind_contexts(contexts)
    started = time.monotonic()
    try:
        with pytest.raises(RedisConnectionError):
            run([[claim.member, claim.token]])
    finally:
        unbind_contexts(token)
        restart.join()
    took = time.monotonic() - started
    assert took < 10, took  # back once Redis answered (2 s), not after the 60 s lease
    assert client.zscore(due.k.lease, member) is None
    assert client.zscore(due.k.due, member) is not None and client.zscore(due.k.due, member) <= time.time()
    contexts.close()
