"""A webhook receiver on loopback, for Apprise's ``json://`` posts (tests/channels, the pipeline)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "s3cr3t-hook-token"  # in every URL: a test can check it reached no log, record or error


class HookSink:
    """A webhook receiver on loopback: records each POST (path and JSON body) and answers
    ``status``; with ``silent`` it holds the connection and never answers."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.status = 200
        self.silent = False
        self.released = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.posts.append((self.path, json.loads(body)))
                if sink.silent:
                    sink.released.wait(10)
                    return
                self.send_response(sink.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, query: str = "") -> str:
        return f"json://127.0.0.1:{self.port}/hook/{SECRET}{query}"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
