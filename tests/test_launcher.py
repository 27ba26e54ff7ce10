"""`b24notify up` and `b24notify worker` as real processes: stopping on signals however they come,
a busy port named before anything starts, and RQ's per-job lines kept out of the output."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time

import pytest
from redis import Redis

from tests.support.processes import CliProcess
from tests.support.servers import free_port, wait_for
from tests.support.up import child_pids, delete_keys, kill_everything, processes_of, start_up, wait_for_output

pytestmark = pytest.mark.e2e

# The launcher gives its children 20 s to finish their jobs; an idle demo stops in a second or two.
STOP_BOUND_SECONDS = 30.0
SIGNAL_PAIRS = 300
SIGNAL_GAP_STEP_SECONDS = 0.5e-6


def _busy_wait(seconds: float) -> None:
    # time.sleep cannot wait a few microseconds; the gaps below must be that short.
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def _send_signal_pairs(process: CliProcess) -> None:
    """SIGTERM twice in a row, again and again, the second 0, 0.5, 1 … 150 µs after the first, as
    `timeout` and make deliver them under `timeout 120 make run`. Some gap lands the second signal
    while the first one's handler runs, which is where a handler that takes a lock deadlocks."""
    for pair in range(SIGNAL_PAIRS):
        if process.proc.poll() is not None:
            return
        process.proc.send_signal(signal.SIGTERM)
        _busy_wait(pair * SIGNAL_GAP_STEP_SECONDS)
        process.proc.send_signal(signal.SIGTERM)
        _busy_wait(5e-4)


def _stops_in_time_on_signal_pairs(redis_url: str, key_prefix: str, redis: Redis) -> None:
    up = start_up(redis_url, key_prefix, "--port", str(free_port()))
    try:
        wait_for_output(up, "b24notify: up —", 40)
        assert len(child_pids(up.pid)) == 3  # the web and two workers
        _send_signal_pairs(up)
        try:
            up.proc.wait(timeout=STOP_BOUND_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`b24notify up` still running {STOP_BOUND_SECONDS:g} s after the signals:\n"
                        f"{up.output()[-3000:]}")
        # 0, or killed by a last signal that came after it had stopped everything and put the
        # default handlers back.
        assert up.proc.returncode in (0, -signal.SIGTERM), up.output()[-3000:]
        # Its web, its workers and their RQ schedulers too.
        wait_for(lambda: not processes_of(key_prefix), 10, "processes left running")
    finally:
        kill_everything(up, key_prefix)
        up.stop()
        delete_keys(redis, key_prefix)


def test_signals_in_quick_succession_stop_up_in_time(redis_url, key_prefix, redis):
    # Twice: a run has a few hundred chances at the race, and a launcher whose handler takes a lock
    # hung in about half of the runs.
    for _ in range(2):
        _stops_in_time_on_signal_pairs(redis_url, key_prefix, redis)


def test_busy_port_is_named_before_anything_starts(redis_url, key_prefix, redis):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        up = start_up(redis_url, key_prefix, "--demo", "--port", str(port))
        try:
            code = up.proc.wait(timeout=30)
        finally:
            kill_everything(up, key_prefix)
            up.stop()
            delete_keys(redis, key_prefix)
    output = up.output()
    assert code != 0
    assert f"port {port} on 127.0.0.1 is busy" in output and "--port N" in output, output
    assert "b24notify: demo" not in output and "event=worker.start" not in output, output  # checked first


def test_rq_job_lines_stay_out_of_the_worker_output_at_info(redis_url, key_prefix, redis, simulator, user):
    task = user.add_task("Check the stock")
    user.comment(task, "Counted", as_result=True)  # the worker's first sweep syncs it: an RQ job
    queue, name = f"{key_prefix}-queue", f"{key_prefix}-w0"
    worker = CliProcess(["worker", "--name", name], {
        "REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": key_prefix, "B24NOTIFY_QUEUE": queue,
        "B24_WEBHOOK_URL": simulator.webhook_url, "B24_APPLICATION_TOKEN": simulator.config.application_token,
        "NOTIFY_CHAT": "chat42", "B24NOTIFY_LOG_LEVEL": "INFO",
    })
    try:
        wait_for(lambda: redis.sismember(f"rq:workers:{queue}", f"rq:worker:{name}"), 30, "worker not registered")
        wait_for(lambda: any(redis.scan_iter(match=f"{key_prefix}:results:*")), 30, "the task was not synced")
    finally:
        worker.stop()
        redis.srem("rq:queues", f"rq:queue:{queue}")
    output = worker.output()
    assert "event=worker.start" in output  # our own INFO lines stay
    rq_lines = [line for line in output.splitlines() if " INFO rq." in line]
    assert not rq_lines, rq_lines


def test_up_keeps_its_own_redis_data_across_restarts_with_a_real_portal(key_prefix, simulator, tmp_path):
    """No Redis at REDIS_URL and a portal configured: the redis-server `up` starts keeps its data in
    B24NOTIFY_DATA_DIR, so a restart finds what the last run wrote."""
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    env = {"B24_WEBHOOK_URL": simulator.webhook_url, "B24_APPLICATION_TOKEN": simulator.config.application_token,
           "NOTIFY_CHAT": "chat42", "B24NOTIFY_DATA_DIR": str(tmp_path)}
    marker = f"{key_prefix}:marker"
    for run in ("first", "second"):
        up = start_up(nobody, key_prefix, "--port", str(free_port()), "--workers", "1", env=env)
        try:
            output = wait_for_output(up, "b24notify: up —", 40)
            url = re.search(r"started redis-server on (redis://\S+)", output)
            assert url, output
            client = Redis.from_url(url.group(1))
            if run == "first":
                client.set(marker, "written by the first run")
            else:
                assert client.get(marker) == b"written by the first run"
                assert f"its data kept across restarts in {tmp_path / 'redis'}" in output, output
            client.close()
            assert up.stop(timeout=STOP_BOUND_SECONDS) == 0, up.output()[-3000:]
        finally:
            kill_everything(up, key_prefix)
            up.stop()
    assert (tmp_path / "redis" / "appendonlydir").is_dir()


def test_worker_stopped_as_its_scheduler_starts_leaves_no_process_behind(redis_url, key_prefix, simulator):
    """RQ forks its scheduler process before it puts its signal handlers in: a SIGTERM in between
    killed the worker and left the scheduler running, re-taking its lock every second, for ever."""
    worker = CliProcess(["worker", "--name", f"{key_prefix}-w0"], {
        "REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": key_prefix, "B24NOTIFY_QUEUE": f"{key_prefix}-queue",
        "B24_WEBHOOK_URL": simulator.webhook_url, "B24_APPLICATION_TOKEN": simulator.config.application_token,
        "NOTIFY_CHAT": "chat42",
    })
    try:
        wait_for(lambda: child_pids(worker.pid), 30, "no scheduler process", interval=0.001)
        worker.proc.send_signal(signal.SIGTERM)
        worker.proc.wait(timeout=STOP_BOUND_SECONDS)
        wait_for(lambda: not processes_of(key_prefix), 10, "a process of the worker left running")
    finally:
        kill_everything(worker, key_prefix)
        worker.stop()
