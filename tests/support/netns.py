"""A network namespace joined to this machine by a veth pair, for tests that cut one process's
network (tests/test_failover.py, round two). Needs iproute2's ``ip`` and root (CAP_NET_ADMIN).

Addresses: a /30 in 10.213.0.0/16 chosen from the pid, checked against the addresses and routes in
use; the host side is ``.1`` (servers bind it), the namespace side ``.2``. Nothing else is reached:
processes in the namespace see only the host side of the pair.

``cut()`` takes the host side of the pair down: the namespace's packets are dropped on the pair
(no carrier), and the host's to the namespace go to a blackhole route added for the /30 (without
it they would take the default route while the pair's own route is down). Both ends see a silent
partition -- timeouts, no resets -- as with a real one. ``restore()`` brings the link back.

``close()`` deletes the pair, the namespace and the route; it runs on any failure of setup, and
namespaces left by a test process that died (its pid in the name) are removed on the next setup.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import shutil
import subprocess
import sys

NAME = re.compile(r"^b24p(\d+)-\d+$")
SUBNETS = ipaddress.IPv4Network("10.213.0.0/16")
_sequence = itertools.count()


class NetnsError(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> str:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise NetnsError("`ip` (iproute2) is not installed: apt-get install iproute2") from None
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Namespaces (and their pairs and routes) of test processes that are gone (SIGKILLed runs)."""
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        found = NAME.match(name)
        if found and not _pid_alive(int(found.group(1))):
            ip("link", "del", f"{name}h", check=False)
            ip("netns", "del", name, check=False)
    for line in ip("-4", "route", "show", "type", "blackhole").splitlines():
        parts = line.split()
        if len(parts) >= 2 and ipaddress.IPv4Network(parts[1], strict=False).subnet_of(SUBNETS):
            pair = _pair_of(parts[1])
            if pair is None or not _owner_alive(pair):
                ip("route", "del", *parts, check=False)


def _pair_of(subnet: str) -> str | None:
    """The interface holding the host side of ``subnet`` (None: the pair is gone)."""
    host = str(next(ipaddress.ip_network(subnet).hosts()))
    for line in ip("-4", "-o", "addr", "show").splitlines():
        parts = line.split()
        if f"{host}/30" in parts:
            return parts[1].split("@")[0]
    return None


def _owner_alive(interface: str) -> bool:
    found = NAME.match(interface[:-1])
    return found is None or _pid_alive(int(found.group(1)))


def _used_networks() -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    for line in ip("-4", "-o", "addr", "show").splitlines() + ip("-4", "route", "show", "table", "all").splitlines():
        for word in line.split():
            try:
                network = ipaddress.ip_network(word, strict=False)
            except ValueError:
                continue
            if isinstance(network, ipaddress.IPv4Network) and network.prefixlen > 0:
                used.append(network)
    return used


def _free_subnet(seed: int) -> ipaddress.IPv4Network:
    used = _used_networks()
    subnets = list(SUBNETS.subnets(new_prefix=30))
    for step in range(len(subnets)):
        subnet = subnets[(seed + step) % len(subnets)]
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise NetnsError(f"no free /30 left in {SUBNETS}")


class Netns:
    """``with Netns() as ns:`` -- ``ns.prefix`` runs a command inside, ``ns.host_address`` is
    where it reaches this machine, ``ns.cut()`` / ``ns.restore()`` take the link down and up."""

    def __init__(self) -> None:
        if shutil.which("ip") is None:
            raise NetnsError("`ip` (iproute2) is not installed: apt-get install iproute2")
        if os.geteuid() != 0:
            raise NetnsError("network namespaces need root (CAP_NET_ADMIN)")
        remove_stale()
        self.name = f"b24p{os.getpid()}-{next(_sequence) % 10}"  # + "h"/"n": within IFNAMSIZ (15)
        self.host_if, self.ns_if = f"{self.name}h", f"{self.name}n"
        self.subnet = _free_subnet(os.getpid() * 10 + int(self.name[-1]))
        host, guest = list(self.subnet.hosts())
        self.host_address, self.ns_address = str(host), str(guest)
        self._made: list[str] = []
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        ip("netns", "add", self.name)
        self._made.append("netns")
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._made.append("link")
        ip("link", "set", self.ns_if, "netns", self.name)
        ip("addr", "add", f"{self.host_address}/30", "dev", self.host_if)
        ip("route", "add", "blackhole", str(self.subnet), "metric", "4242")
        self._made.append("route")
        ip("link", "set", self.host_if, "up")
        ip("-n", self.name, "addr", "add", f"{self.ns_address}/30", "dev", self.ns_if)
        ip("-n", self.name, "link", "set", self.ns_if, "up")
        ip("-n", self.name, "link", "set", "lo", "up")

    @property
    def prefix(self) -> list[str]:
        """Put before a command to run it in the namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        ip("link", "set", self.host_if, "down")

    def restore(self) -> None:
        ip("link", "set", self.host_if, "up")

    def reachable(self, port: int) -> bool:
        """Something inside the namespace can open a TCP connection to the host side's ``port``."""
        probe = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()\n"
                 "except OSError:\n sys.exit(1)")
        done = subprocess.run([*self.prefix, sys.executable, "-c", probe, self.host_address, str(port)],
                              capture_output=True, timeout=10)
        return done.returncode == 0

    def close(self) -> None:
        if "route" in self._made:
            ip("route", "del", "blackhole", str(self.subnet), "metric", "4242", check=False)
        if "link" in self._made:
            ip("link", "del", self.host_if, check=False)  # its peer goes with it
        if "netns" in self._made:
            ip("netns", "del", self.name, check=False)
        self._made.clear()

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
