"""Find Redis at REDIS_URL, or start a real redis-server for a one-machine run (``make run``)."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (RedisError, OSError):
        return False


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen[bytes]
    url: str
    workdir: tempfile.TemporaryDirectory[str]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.workdir.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_embedded_redis(url: str) -> EmbeddedRedis:
    """Start redis-server from PATH on the URL's port if it is a loopback URL that nobody answers,
    else on a free port. Raises RuntimeError with what to install when there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("no Redis answers at REDIS_URL and redis-server is not installed "
                           "(apt-get install redis-server, or set REDIS_URL)")
    parts = urlsplit(url)
    port = parts.port or 6379
    if parts.hostname not in ("127.0.0.1", "localhost") or not _port_free(port):
        port = _free_port()
    workdir = tempfile.TemporaryDirectory(prefix="b24notify-redis-")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", workdir.name,
         "--appendonly", "yes", "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    db = parts.path.lstrip("/") or "0"
    embedded = EmbeddedRedis(process, f"redis://127.0.0.1:{port}/{db}", workdir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(embedded.url, 0.5):
            log.info("event=redis.embedded port=%d", port)
            return embedded
        if process.poll() is not None:
            break
        time.sleep(0.05)
    embedded.stop()
    raise RuntimeError("redis-server did not start")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
