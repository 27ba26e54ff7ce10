"""A real Redis Sentinel topology on loopback for tests: a primary, one replica and three Sentinels
(``redis-server --sentinel``), each on a free port in its own temporary folder, all killed at the
end. Fast failover settings: the primary is "down" after 1 s, a failover times out after 3 s.

``SentinelTopology(host=ADDRESS)``: every server also listens on ADDRESS (a veth pair's host side,
tests/support/netns.py) and is known by it -- the Sentinels monitor the primary there, the replica
replicates from there, the servers and Sentinels announce it -- so what a Sentinel names as primary
is reachable from the namespace too. Protected mode is off then (clients that are not loopback);
only loopback and the test's own pair are ever bound.

``SentinelTopology(replica_in=NETNS)``: the same, with the replica inside that namespace (bound to
its side of the pair): ``NETNS.cut()`` then cuts the replication link, so what the primary writes
meanwhile never reaches the replica -- a primary that dies then loses it, as a host that dies does
(a process killed on loopback still hands its socket's buffered bytes to the replica)."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from tests.support.netns import Netns
from tests.support.servers import free_port, wait_for

SERVICE = "b24primary"
LOOPBACK = "127.0.0.1"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def _answers(port: int, host: str = LOOPBACK) -> bool:
    try:
        return bool(Redis(host, port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
    except (RedisError, OSError):
        return False


class SentinelTopology:
    def __init__(self, sentinels: int = 3, host: str = LOOPBACK, replica_in: Netns | None = None) -> None:
        self.host = replica_in.host_address if replica_in is not None else host
        self.replica_in = replica_in
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

    def _spawn(self, port: int, args: list[str], prefix: list[str] | None = None) -> None:
        log = (self.dir / f"{port}.log").open("wb")
        self.processes[port] = subprocess.Popen([*(prefix or []), "redis-server", *args], stdout=log,
                                                stderr=subprocess.STDOUT, cwd=self.dir)
        log.close()

    def _start_redis(self, port: int, *extra: str) -> None:
        folder = self.dir / str(port)
        folder.mkdir(exist_ok=True)
        # No 5 s wait for more replicas before a full sync (Redis's default for diskless syncs).
        common = ["--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(folder),
                  "--repl-diskless-sync-delay", "0"]
        if port == self.replica_port and self.replica_in is not None:
            # In its own namespace: known by (and bound to) its side of the pair only.
            address = self.replica_in.ns_address
            self._spawn(port, [*common, "--bind", address, "--replica-announce-ip", address, "--protected-mode", "no",
                               *extra], prefix=self.replica_in.prefix)
            return
        options = [word for name, value in self._known_by_host("replica-announce-ip") for word in (f"--{name}", value)]
        self._spawn(port, [*common, "--bind", *self._binds(), *options, *extra])

    def address(self, port: int) -> str:
        """Where this machine reaches the server on ``port``."""
        if port == self.replica_port and self.replica_in is not None:
            return self.replica_in.ns_address
        return LOOPBACK

    def _binds(self) -> list[str]:
        return [LOOPBACK] if self.host == LOOPBACK else [LOOPBACK, self.host]

    def _known_by_host(self, announce: str) -> list[tuple[str, str]]:
        """The options that make a server known by ``host``: the address it announces (``announce``:
        the option's name) and protected mode off for clients that are not loopback."""
        return [] if self.host == LOOPBACK else [(announce, self.host), ("protected-mode", "no")]

    def _start(self) -> None:
        self._start_redis(self.primary_port)
        self._start_redis(self.replica_port, "--replicaof", self.host, str(self.primary_port))
        for port in (self.primary_port, self.replica_port):
            wait_for(partial(_answers, port, self.address(port)), 10, f"redis-server on {port} did not start")
        replica = Redis(self.address(self.replica_port), self.replica_port)
        wait_for(lambda: replica.info("replication").get("master_link_status") == "up", 10, "replica not in sync")
        replica.close()
        # Each Sentinel is told its own id, the replica and the other Sentinels: found by itself,
        # that takes ~6 s of hello messages and INFO polls per topology.
        ids = {port: secrets.token_hex(20) for port in self.sentinel_ports}
        replica_host = self.address(self.replica_port) if self.replica_in is not None else self.host
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"  # Sentinel rewrites its file: one each, writable
            conf.write_text("\n".join([
                f"port {port}", f"bind {' '.join(self._binds())}", f"dir {self.dir}",
                *(f"{name} {value}" for name, value in self._known_by_host("sentinel announce-ip")),
                f"sentinel myid {ids[port]}",
                f"sentinel monitor {SERVICE} {self.host} {self.primary_port} 2",
                f"sentinel known-replica {SERVICE} {replica_host} {self.replica_port}",
                *(f"sentinel known-sentinel {SERVICE} {self.host} {other} {ids[other]}"
                  for other in self.sentinel_ports if other != port),
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {SERVICE} 1", ""]))
            self._spawn(port, [str(conf), "--sentinel"])
        # Ready when every Sentinel knows the replica and the two other Sentinels: before that a
        # failover would not get its quorum or would have nothing to promote.
        for port in self.sentinel_ports:
            client = Redis(port=port, decode_responses=True, socket_timeout=1)
            wait_for(partial(_sentinel_ready, client, len(self.sentinel_ports) - 1), 20,
                     f"sentinel {port} did not discover the topology", interval=0.1)
            client.close()

    def url(self, db: int = 0, scheme: str = "redis+sentinel") -> str:
        hosts = ",".join(f"{self.host}:{port}" for port in self.sentinel_ports)
        return f"{scheme}://{hosts}/{SERVICE}/{db}"

    def primary(self) -> int:
        """The port the Sentinels name as primary now."""
        for port in self.sentinel_ports:
            try:
                client = Redis(port=port, decode_responses=True, socket_timeout=1)
                host_port = _command(client, "SENTINEL", "get-master-addr-by-name", SERVICE)
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
        wait_for(lambda: _answers(port, self.address(port)), 10, f"redis-server on {port} did not start again")

    def wait_promoted(self, old: int, timeout: float = 30.0) -> int:
        """Wait until every Sentinel names a new primary that answers as one; its port."""
        def promoted() -> int | None:
            port = self.primary()
            if port == old:
                return None
            try:
                role = _command(Redis(self.address(port), port, socket_timeout=0.5), "ROLE")[0]
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


def _command(client: Redis, *args: str) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]  # redis-py's, untyped


def _sentinel_ready(client: Redis, others: int) -> bool:
    try:
        replicas = _command(client, "SENTINEL", "replicas", SERVICE)
        sentinels = _command(client, "SENTINEL", "sentinels", SERVICE)
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
