"""Real b24notify processes for end-to-end tests: started with an environment, stopped with
SIGTERM (then SIGKILL), their output kept in a file and shown when a test fails."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


class CliProcess:
    """``prefix``: what runs the command, e.g. ``["ip", "netns", "exec", NAME]`` (which execs it:
    the pid, signals and exit code stay the worker's own)."""

    def __init__(self, args: list[str], env: dict[str, str], prefix: Sequence[str] = ()) -> None:
        self.args = args
        self.prefix = list(prefix)
        self.log = Path(tempfile.mkstemp(prefix="b24notify-", suffix=".log")[1])
        atexit.register(self.log.unlink, missing_ok=True)  # read by the tests until then
        self._out = self.log.open("wb")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("B24", "NOTIFY_", "SMTP_", "EMAIL_"))}
        full_env.update(env)
        self.proc = subprocess.Popen([*self.prefix, sys.executable, "-m", "b24notify.cli", *args], env=full_env,
                                     stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, like a crashed machine."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

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

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")


def fleet_idle(redis_url: str, prefix: str) -> bool:
    """Nothing due, running or pending: every sync and delivery the fleet knows of is done.
    Any REDIS_URL form, Sentinel included (the product's own connection factory)."""
    from b24notify.redis_conn import connect

    client = connect(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        busy = sum(client.zcard(f"{prefix}:{kind}:{name}") for kind in ("due", "lease")
                   for name in ("tasks", "deliveries"))
        return busy + client.hlen(f"{prefix}:pending:tasks") == 0
    finally:
        client.close()
