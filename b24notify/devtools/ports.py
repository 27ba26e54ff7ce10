"""Is a TCP port free to listen on, and which one is: for ``b24notify up`` and its embedded Redis."""

from __future__ import annotations

import socket


def _family(host: str) -> socket.AddressFamily:
    return socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]


def port_is_free(host: str, port: int) -> bool:
    """True if a server could listen on ``host:port`` now. SO_REUSEADDR as uvicorn and redis-server
    set it, so a port held only by connections in TIME_WAIT counts as free, as it is for them."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now (someone may take it before it is used)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
