"""A real Redis Sentinel topology on loopback for tests: a primary, one replica and three Sentinels
(``redis-server --sentinel``), each on a free port in its own temporary folder, all killed at the
end. Fast failover settings: the primary is "down" after 1 s, a failover times out after 3 s."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from tests.support.servers import free_port, wait_for

SERVICE = "b24primary"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def _answers(port: int) -> bool:
    try:
        return bool(Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
    except (RedisError, OSError):
        return False


class SentinelTopology:
    def __init__(self, sentinels: int = 3) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="b24notify-sentinel-"))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _spawn(self, port: int, args: list[str]) -> None:
        log = (self.dir / f"{port}.log").open("wb")
        self.processes[port] = subprocess.Popen(["redis-server", *args], stdout=log, stderr=subprocess.STDOUT,
                                                cwd=self.dir)
        log.close()

    def _start_redis(self, port: int, *extra: str) -> None:
        folder = self.dir / str(port)
        folder.mkdir(exist_ok=True)
        self._spawn(port, ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                           "--dir", str(folder), *extra])

    def _start(self) -> None:
        self._start_redis(self.primary_port)
        self._start_redis(self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        for port in (self.primary_port, self.replica_port):
            wait_for(lambda port=port: _answers(port), 10, f"redis-server on {port} did not start")
        replica = Redis(port=self.replica_port)
        wait_for(lambda: replica.info("replication").get("master_link_status") == "up", 10, "replica not in sync")
        replica.close()
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"  # Sentinel rewrites its file: one each, writable
            conf.write_text("\n".join([
                f"port {port}", "bind 127.0.0.1", f"dir {self.dir}",
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 2",
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {SERVICE} 1", ""]))
            self._spawn(port, [str(conf), "--sentinel"])
        # Ready when every Sentinel knows the replica and the two other Sentinels: before that a
        # failover would not get its quorum or would have nothing to promote.
        for port in self.sentinel_ports:
            client = Redis(port=port, decode_responses=True, socket_timeout=1)
            wait_for(lambda client=client: _sentinel_ready(client, len(self.sentinel_ports) - 1), 20,
                     f"sentinel {port} did not discover the topology", interval=0.1)
            client.close()

    def url(self, db: int = 0, scheme: str = "redis+sentinel") -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"{scheme}://{hosts}/{SERVICE}/{db}"

    def primary(self) -> int:
        """The port the Sentinels name as primary now."""
        for port in self.sentinel_ports:
            try:
                client = Redis(port=port, decode_responses=True, socket_timeout=1)
                host_port = client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
                client.close()
                return int(host_port[1])
            except (RedisError, OSError):
                continue
        raise AssertionError("no Sentinel answered")

    def kill_primary(self) -> int:
        """SIGKILL the current primary (no shutdown, no last write to the replica); its port."""
        port = self.primary()
        self.kill(port)
        return port

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self, port: int) -> None:
        """Start a killed redis-server again on its port (empty: no persistence here)."""
        self._start_redis(port)
        wait_for(lambda: _answers(port), 10, f"redis-server on {port} did not start again")

    def wait_promoted(self, old: int, timeout: float = 30.0) -> int:
        """Wait until every Sentinel names a new primary that answers as one; its port."""
        def promoted() -> int | None:
            port = self.primary()
            if port == old:
                return None
            try:
                role = Redis(port=port, socket_timeout=0.5).execute_command("ROLE")[0]
            except (RedisError, OSError):
                return None
            return port if role == b"master" else None
        return int(wait_for(promoted, timeout, "Sentinel did not promote the replica", interval=0.1))

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SentinelTopology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sentinel_ready(client: Redis, others: int) -> bool:
    try:
        replicas = client.execute_command("SENTINEL", "replicas", SERVICE)
        sentinels = client.execute_command("SENTINEL", "sentinels", SERVICE)
    except (RedisError, OSError):
        return False
    return len(replicas) >= 1 and len(sentinels) >= others


def measure(action: object, timeout: float) -> float:
    """Seconds until ``action()`` first succeeds (RedisError/OSError mean "not yet")."""
    start = time.monotonic()
    while True:
        try:
            action()  # type: ignore[operator]
            return time.monotonic() - start
        except (RedisError, OSError):
            if time.monotonic() - start > timeout:
                raise
            time.sleep(0.05)
