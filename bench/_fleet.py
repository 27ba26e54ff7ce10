"""Real processes for bench/e2e.py: ``b24notify serve`` plus N ``b24notify worker`` (``Fleet``), and
the bare baseline (``BareHandler``, serving ``bare_app`` below in its own uvicorn process).

Every process writes its output to a file in one temporary directory, never to a pipe nobody
reads (a worker logging at INFO fills a 64 KiB pipe within seconds and then blocks).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from redis import Redis
from rq import Queue, Worker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
# Variables b24notify reads: a child gets only the ones we set, not the operator's own.
_PRODUCT_VARS = ("B24", "NOTIFY_", "SMTP_", "EMAIL_", "REDIS_URL")


class BenchProcess:
    """One child process of this interpreter, its output in ``log``; stopped with SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log = log
        self._out = log.open("wb")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(_PRODUCT_VARS)}
        full_env.update(env)
        self.proc = subprocess.Popen([sys.executable, *args], env=full_env, cwd=ROOT,
                                     stdout=self._out, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()
        return int(self.proc.returncode)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def wait_until(condition: Callable[[], Any], timeout: float, what: str,
               processes: Sequence[BenchProcess] = ()) -> None:
    """Poll ``condition`` until truthy; fail after ``timeout`` or as soon as one of ``processes`` died."""
    deadline = time.monotonic() + timeout
    while not condition():
        for p in processes:
            if not p.alive():
                raise RuntimeError(f"{' '.join(p.args)} exited {p.proc.returncode}:\n{p.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} (after {timeout}s)")
        time.sleep(0.05)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Fleet:
    """``b24notify serve`` on ``port`` and ``workers`` × ``b24notify worker``, all with ``env``.
    Ready when /readyz answers 200 and every worker has registered with RQ (its dispatcher thread
    starts before RQ's loop, so a registered worker is also dispatching)."""

    def __init__(self, env: dict[str, str], *, port: int, workers: int, log_dir: Path) -> None:
        self.env = env
        self.port = port
        self.workers = workers
        self.log_dir = log_dir
        self.processes: list[BenchProcess] = []

    def __enter__(self) -> Fleet:
        cli = ["-m", "b24notify.cli"]
        prefix = self.env["B24NOTIFY_KEY_PREFIX"]
        self.processes.append(BenchProcess([*cli, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                                           self.env, self.log_dir / f"{prefix}-serve.log"))
        self.processes += [
            BenchProcess([*cli, "worker", "--name", f"{prefix}-w{i}"], self.env, self.log_dir / f"{prefix}-w{i}.log")
            for i in range(self.workers)
        ]
        try:
            wait_until(lambda: answers(f"http://127.0.0.1:{self.port}/readyz"), 30, "serve did not get ready",
                       self.processes)
            redis = Redis.from_url(self.env["REDIS_URL"])
            queue = Queue(self.env["B24NOTIFY_QUEUE"], connection=redis)
            try:
                wait_until(lambda: Worker.count(connection=redis, queue=queue) >= self.workers, 30,
                           "workers did not register", self.processes)
            finally:
                redis.close()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[int]:
        codes = [p.stop() for p in self.processes]
        for p, code in zip(self.processes, codes, strict=True):
            if code not in (0, -signal.SIGTERM):
                print(f"--- {' '.join(p.args)} exited {code}; log {p.log}\n{p.tail()}", file=sys.stderr)
        return codes


def delete_keys(redis_url: str, prefix: str, queue: str) -> int:
    """Everything one fleet left in Redis: our prefix, and RQ's keys for our queue and workers."""
    redis = Redis.from_url(redis_url)
    try:
        patterns = [f"{prefix}:*", f"*{queue}*", f"rq:worker:{prefix}-*", f"rq:*{prefix}-*"]
        doomed = {key for pattern in patterns for key in redis.scan_iter(match=pattern, count=1000)}
        if doomed:
            redis.delete(*doomed)
        redis.srem("rq:queues", f"rq:queue:{queue}")  # RQ's registry of every queue it has seen
        return len(doomed)
    finally:
        redis.close()


# -- the bare baseline -----------------------------------------------------------------------------


def bare_app() -> Starlette:
    """``uvicorn --factory bench._fleet:bare_app``: on each task event, at once and before answering,
    read the task's results and post the newest to the chat. No queue, no state, no dedupe, no rate
    budget: the least work that turns an event into a message. Configured by BARE_WEBHOOK_URL,
    BARE_APPLICATION_TOKEN and BARE_DIALOG_ID."""
    from b24notify.phpform import parse_php_query

    webhook = os.environ["BARE_WEBHOOK_URL"]
    token = os.environ["BARE_APPLICATION_TOKEN"]
    dialog = os.environ["BARE_DIALOG_ID"]
    client = httpx.AsyncClient(base_url=webhook, timeout=10)

    async def call(method: str, params: dict[str, Any]) -> Any:
        response = await client.post(method, json=params)
        return response.json().get("result")

    async def webhook_endpoint(request: Request) -> JSONResponse:
        form = parse_php_query(await request.body())
        if form.get("auth", {}).get("application_token") != token:
            return JSONResponse({"status": "rejected"}, status_code=401)
        after = form.get("data", {}).get("FIELDS_AFTER")
        task_id = (after.get("TASK_ID") or after.get("ID")) if isinstance(after, dict) else None
        if not task_id:
            return JSONResponse({"status": "ignored"})
        rows = await call("tasks.task.result.list", {"taskId": int(task_id)})
        if rows:
            await call("im.message.add", {"DIALOG_ID": dialog, "MESSAGE": f"New result: {rows[0]['text']}",
                                          "URL_PREVIEW": "N"})
        return JSONResponse({"status": "sent" if rows else "no results"})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.aclose()

    return Starlette(routes=[Route("/webhooks/bitrix24", webhook_endpoint, methods=["POST"]),
                             Route("/readyz", ready)], lifespan=lifespan)


class BareHandler:
    """The bare baseline in its own uvicorn process, on ``port``."""

    def __init__(self, env: dict[str, str], *, port: int, log: Path) -> None:
        self.port = port
        self.process = BenchProcess(["-m", "uvicorn", "--factory", "bench._fleet:bare_app", "--host", "127.0.0.1",
                                     "--port", str(port), "--log-level", "warning", "--no-access-log"], env, log)

    def __enter__(self) -> BareHandler:
        try:
            wait_until(lambda: answers(f"http://127.0.0.1:{self.port}/readyz"), 30, "bare handler did not start",
                       [self.process])
        except BaseException:
            self.process.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        code = self.process.stop()
        if code not in (0, -signal.SIGTERM):
            print(f"--- bare handler exited {code}; log {self.process.log}\n{self.process.tail()}", file=sys.stderr)


def wait_idle(redis: Redis, prefix: str, timeout: float) -> None:
    """Wait until nothing is due, running or pending in the fleet (past the debounce first)."""
    deadline = time.monotonic() + timeout
    time.sleep(1.5)
    while time.monotonic() < deadline:
        busy = sum(redis.zcard(f"{prefix}:{k}:{n}") for k in ("due", "lease") for n in ("tasks", "deliveries"))
        busy += redis.hlen(f"{prefix}:pending:tasks")
        if busy == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("the fleet did not drain")
