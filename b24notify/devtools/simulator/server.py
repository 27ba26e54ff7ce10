"""Serving the simulator with uvicorn: in a background thread for tests (``RunningSimulator``) or in
the foreground for the CLI (``serve_forever``).

The port is bound before the app is built, so the app knows its own ``host:port`` — what it sends
as ``auth[domain]`` in events — even when the config asked for port 0.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import replace
from types import TracebackType

import uvicorn

from b24notify.devtools.simulator.activity import run_activity
from b24notify.devtools.simulator.app import create_app
from b24notify.devtools.simulator.config import SimulatorConfig
from b24notify.devtools.simulator.control_client import SimulatorControl
from b24notify.devtools.simulator.dispatch import ConnectionDropped
from b24notify.devtools.simulator.oauth import OAuthAuthority

__all__ = ["RunningSimulator", "SimulatorConfig", "serve_forever"]

log = logging.getLogger(__name__)


class _HideDroppedConnections(logging.Filter):
    """uvicorn logs the exception a drop fault raises on purpose as an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


def _quiet_drop_faults() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDroppedConnections) for f in logger.filters):
        logger.addFilter(_HideDroppedConnections())


def _bind(config: SimulatorConfig) -> tuple[socket.socket, SimulatorConfig]:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says TCP, and without it every keep-alive answer stalls ~40 ms on delayed ACKs.
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    sock.listen(128)  # connections made before uvicorn starts wait in the backlog
    return sock, replace(config, port=sock.getsockname()[1])


def _server(config: SimulatorConfig, log_level: str, authority: OAuthAuthority | None = None) -> uvicorn.Server:
    _quiet_drop_faults()
    return uvicorn.Server(uvicorn.Config(
        create_app(config, authority),
        log_config=None,  # leave the process's logging alone
        log_level=log_level,
        access_log=False,
        lifespan="on",
        http="h11",
        loop="asyncio",
        timeout_graceful_shutdown=2,
        ssl_certfile=config.tls_certfile,
        ssl_keyfile=config.tls_keyfile,
    ))


class RunningSimulator:
    """``with RunningSimulator(config) as sim:`` serves the simulator on loopback until the block ends.

    Simulators given the same ``authority`` are portals of one OAuth app (give each its own
    ``member_id``); without one, each makes its own from the config."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        authority: OAuthAuthority | None = None,
        *,
        startup_timeout: float = 10.0,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.authority = authority or OAuthAuthority(self.config.oauth_client_id, self.config.oauth_client_secret,
                                                     self.config.access_token_ttl_seconds)
        self._startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._control: SimulatorControl | None = None

    @property
    def base_url(self) -> str:
        return f"{self.config.scheme}://{self.domain}"

    @property
    def domain(self) -> str:
        """host:port, what events carry as ``auth[domain]``."""
        return self.config.portal_domain

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/rest/{self.config.webhook_user_id}/{self.config.webhook_code}/"

    def webhook_url_for(self, user_id: int) -> str:
        """An incoming webhook of another user (made on first use): calls through it act as them."""
        return self.control.webhook_url(user_id)

    @property
    def oauth_url(self) -> str:
        """The token endpoint (``grant_type=refresh_token``), served from ``authority``."""
        return f"{self.base_url}/oauth/token/"

    @property
    def client_endpoint(self) -> str:
        """Where OAuth calls go: ``{client_endpoint}{method}?auth=…``."""
        return self.config.client_endpoint

    @property
    def control(self) -> SimulatorControl:
        if self._control is None:
            # A TLS simulator's certificate is self-signed: it is its own trust anchor.
            verify = ssl.create_default_context(cafile=self.config.tls_certfile) if self.config.tls_certfile else True
            self._control = SimulatorControl(self.base_url, verify=verify)
        return self._control

    def start(self) -> None:
        self._socket, self.config = _bind(self.config)
        self._server = _server(self.config, "warning", self.authority)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="b24notify-simulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> RunningSimulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_forever(config: SimulatorConfig, *, activity_interval: float | None = None) -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM). With ``activity_interval``, also play the demo
    activity (``activity.run_activity``) against the simulator every that many seconds."""
    sock, config = _bind(config)
    server = _server(config, "info")
    base = f"{config.scheme}://{config.portal_domain}"
    webhook_url = f"{base}/rest/{config.webhook_user_id}/{config.webhook_code}/"
    # The simulator's webhook code is a fixed test value, not a secret: print it for the operator.
    log.info("event=sim.ready webhook_url=%s oauth_url=%s/oauth/token/ control=%s/_sim/ handler=%s", webhook_url,
             base, base, config.handler_url or "-")
    stop = threading.Event()
    activity: threading.Thread | None = None
    if activity_interval is not None:
        activity = threading.Thread(target=run_activity, args=(webhook_url, stop, activity_interval),
                                    kwargs={"rng_seed": config.seed}, name="b24notify-sim-activity", daemon=True)
        activity.start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl-C it handled once it has shut down; for us that is a clean stop.
        log.info("event=sim.stopped")
    finally:
        stop.set()
        if activity is not None:
            activity.join(timeout=10)
        sock.close()
