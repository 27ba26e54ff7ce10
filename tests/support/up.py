"""A real ``b24notify up`` for tests: on the test Redis under a test prefix, its output in a file,
and stopped with everything it started even when it hangs."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from redis import Redis

from tests.support.processes import CliProcess
from tests.support.servers import wait_for


def start_up(redis_url: str, key_prefix: str, *args: str, env: dict[str, str] | None = None) -> CliProcess:
    """``b24notify up ARGS``; with no portal in ``env``, the demo."""
    full_env = {"REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": key_prefix, "B24NOTIFY_QUEUE": f"{key_prefix}-queue",
                "B24NOTIFY_LOG_LEVEL": "INFO", **(env or {})}
    return CliProcess(["up", *args], full_env)


def wait_for_output(process: CliProcess, text: str, timeout: float) -> str:
    def seen() -> str:
        output = process.output()
        if text not in output and not process.alive():
            raise AssertionError(f"`b24notify up` exited {process.proc.returncode} before printing "
                                 f"{text!r}:\n{output[-4000:]}")
        return output if text in output else ""

    return str(wait_for(seen, timeout, f"{text!r} not printed", interval=0.05))


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (the web and the workers of ``b24notify up``)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(part) for part in children.read_text().split()]
    except OSError:
        return []


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited already


def processes_of(key_prefix: str) -> list[int]:
    """Live processes started for the test that owns ``key_prefix``: b24notify's children get it in
    B24NOTIFY_KEY_PREFIX, and so do processes they fork (RQ's scheduler), orphans included."""
    marker = f"B24NOTIFY_KEY_PREFIX={key_prefix}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(var.startswith(marker) for var in environ.split(b"\0")) and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def kill_everything(process: CliProcess, key_prefix: str) -> None:
    """SIGKILL a hung launcher and whatever it left running for this test (by pid, nothing else)."""
    if process.alive():
        process.kill()
    for pid in processes_of(key_prefix):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def demo_keys(redis: Redis, key_prefix: str) -> list[bytes]:
    """Every key a demo run under ``key_prefix`` made: ours and RQ's for its queue."""
    return [key for pattern in (f"{key_prefix}-demo-*", f"rq:*{key_prefix}-queue-demo-*")
            for key in redis.scan_iter(match=pattern, count=1000)]


def delete_keys(redis: Redis, key_prefix: str) -> None:
    keys = demo_keys(redis, key_prefix) + list(redis.scan_iter(match=f"{key_prefix}*", count=1000))
    if keys:
        redis.delete(*keys)
    for queue in redis.smembers("rq:queues"):
        if key_prefix.encode() in queue:
            redis.srem("rq:queues", queue)
