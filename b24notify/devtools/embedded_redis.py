"""Find Redis at REDIS_URL, or start a real redis-server for a one-machine run (``make run``).

With a real portal the server keeps its data in a folder that outlives the run (append-only file,
fsync every second), so a restart of ``make run`` loses nothing; the demo's server lives in a
temporary folder, since nothing in it is worth keeping.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from redis import Redis
from redis.exceptions import RedisError

from b24notify.devtools.ports import free_port, port_is_free

log = logging.getLogger(__name__)

LOCK_FILE = "b24notify-up.lock"


class EmbeddedRedisError(RuntimeError):
    """redis-server is missing, did not start, or its data folder is in use by another run."""


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (RedisError, OSError):
        return False


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/b24notify`` (``~/.local/share/b24notify``): per user, outside the checkout,
    so neither ``git clean`` nor a second clone of the repository loses or splits the state."""
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "b24notify"


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    persistent: bool
    _release: Callable[[], None]

    def stop(self) -> None:
        self.process.terminate()  # redis-server flushes its append-only file on SIGTERM
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._release()


def _lock(folder: Path) -> Callable[[], None]:
    """Hold ``folder`` for this run: two redis-servers writing one append-only file corrupt it."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise EmbeddedRedisError(f"{folder} is in use by another `b24notify up`; stop it, or give this one "
                                 "its own folder with B24NOTIFY_DATA_DIR") from None
    return lambda: os.close(fd)  # closing the descriptor drops the lock


def start_embedded_redis(url: str, data_dir: Path | None = None) -> EmbeddedRedis:
    """Start redis-server from PATH on the URL's port if it is a loopback URL that nobody answers,
    else on a free port. ``data_dir``: keep the data in ``data_dir/redis`` across runs; None: in a
    temporary folder removed on stop. Raises EmbeddedRedisError saying what to do."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise EmbeddedRedisError("no Redis answers at REDIS_URL and redis-server is not installed "
                                 "(apt-get install redis-server, or set REDIS_URL)")
    parts = urlsplit(url)
    port = parts.port or 6379
    if parts.hostname not in ("127.0.0.1", "localhost") or not port_is_free("127.0.0.1", port):
        port = free_port()
    if data_dir is None:
        workdir = tempfile.TemporaryDirectory(prefix="b24notify-redis-")
        folder, release = Path(workdir.name), workdir.cleanup
    else:
        folder = data_dir / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        release = _lock(folder)
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
         "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    db = parts.path.lstrip("/") or "0"
    embedded = EmbeddedRedis(process, f"redis://127.0.0.1:{port}/{db}", folder, data_dir is not None, release)
    # Loading a large append-only file takes a while; PING answers LOADING until it is done.
    deadline = time.monotonic() + (60 if embedded.persistent else 10)
    while time.monotonic() < deadline:
        if redis_answers(embedded.url, 0.5):
            log.info("event=redis.embedded port=%d dir=%s", port, folder)
            return embedded
        if process.poll() is not None:
            break
        time.sleep(0.05)
    embedded.stop()
    raise EmbeddedRedisError(f"redis-server did not start (port {port}, folder {folder})")
