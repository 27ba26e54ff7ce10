"""Fixtures for the simulator's own tests: a running simulator, a REST client for its webhook, and a
tiny loopback HTTP server that catches the events it sends."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from b24notify.devtools.simulator import RunningSimulator, SimulatorConfig


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@dataclass(frozen=True)
class ReceivedEvent:
    content_type: str
    body: str

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.body, keep_blank_values=True)

    @property
    def form(self) -> dict[str, str]:
        return dict(self.pairs)


class EventReceiver:
    """Stands in for b24notify's event endpoint: records every POST, answers ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self._events: list[ReceivedEvent] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                with receiver._lock:
                    receiver._events.append(ReceivedEvent(self.headers.get("Content-Type", ""), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/b24/events"

    @property
    def events(self) -> list[ReceivedEvent]:
        with self._lock:
            return list(self._events)

    def named(self, name: str) -> list[ReceivedEvent]:
        return [e for e in self.events if e.form.get("event") == name]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Rest:
    """The simulator's webhook, called the way b24notify calls a portal."""

    def __init__(self, webhook_url: str) -> None:
        self.http = httpx.Client(base_url=webhook_url, timeout=10.0)

    def post(self, method: str, params: Any = None) -> httpx.Response:
        return self.http.post(method, json=params if params is not None else {})

    def call(self, method: str, params: Any = None) -> Any:
        response = self.post(method, params)
        payload = response.json()
        assert response.status_code == 200 and "error" not in payload, payload
        return payload["result"]

    def add_task(self, title: str = "Sign the contract", **fields: Any) -> int:
        return int(self.call("tasks.task.add", {"fields": {"TITLE": title, **fields}})["task"]["id"])

    def add_comment(self, task_id: int, text: str = "Done", *, as_result: bool = False, author: int = 503) -> int:
        fields: dict[str, Any] = {"POST_MESSAGE": text, "AUTHOR_ID": author}
        if as_result:
            fields["AS_RESULT"] = "Y"
        return int(self.call("task.commentitem.add", {"TASKID": task_id, "FIELDS": fields}))

    def results(self, task_id: int) -> list[dict[str, Any]]:
        return list(self.call("tasks.task.result.list", {"taskId": task_id}))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Rest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def receiver() -> Iterator[EventReceiver]:
    server = EventReceiver()
    server.start()
    yield server
    server.stop()


SimulatorFactory = Callable[..., RunningSimulator]


@pytest.fixture
def start_simulator() -> Iterator[SimulatorFactory]:
    """Start a simulator with config overrides; every one started is stopped after the test."""
    running: list[RunningSimulator] = []

    def start(**overrides: Any) -> RunningSimulator:
        sim = RunningSimulator(SimulatorConfig(**overrides))
        sim.start()
        running.append(sim)
        return sim

    yield start
    for sim in running:
        sim.stop()


@pytest.fixture
def sim(start_simulator: SimulatorFactory, receiver: EventReceiver) -> RunningSimulator:
    return start_simulator(handler_url=receiver.url, application_token="test-app-token")


@pytest.fixture
def rest(sim: RunningSimulator) -> Iterator[Rest]:
    client = Rest(sim.webhook_url)
    yield client
    client.close()


@dataclass(frozen=True)
class TlsFiles:
    certfile: str
    keyfile: str


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1, its own trust anchor: for clients that only speak
    https:// (b24pysdk). Made with the openssl command line, since no Python package here can."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make the simulator's test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:TRUE",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return TlsFiles(str(cert), str(key))
