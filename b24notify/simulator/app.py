"""The simulator's Starlette app: the portal's REST endpoint and the ``/_sim/`` control API.

REST calls go to ``/rest/{user_id}/{code}/{method}[.json]`` (an incoming webhook, PROTOCOL.md §8),
by POST (JSON or PHP-style form body) or GET (query string). Each request passes, in order: the
webhook check (401 ``NO_AUTH_FOUND``), the leaky bucket (503 ``QUERY_LIMIT_EXCEEDED``; a batch
counts once), then the dispatcher (faults, operating limit, the method).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from b24notify.phpform import FormError, parse_php_query
from b24notify.simulator.config import SimulatorConfig
from b24notify.simulator.control import control_routes
from b24notify.simulator.dispatch import ConnectionDropped
from b24notify.simulator.errors import RestError
from b24notify.simulator.simulation import Simulation


class DroppedConnectionResponse(Response):
    """Start an answer, then fail: uvicorn closes the socket mid-body, so the client sees the
    connection drop (httpx: RemoteProtocolError). ``server.py`` keeps the traceback out of the log."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"result":', "more_body": True})
        raise ConnectionDropped("fault rule: drop the connection")


async def read_params(request: Request) -> dict[str, Any]:
    """Query string, then the body over it (JSON, or a PHP-style form) — PHP's ``$_REQUEST``."""
    try:
        params = parse_php_query(request.url.query)
    except FormError as exc:
        raise RestError("ERROR_ARGUMENT", str(exc)) from None
    body = await request.body()
    if not body.strip():
        return params
    content_type = request.headers.get("content-type", "")
    if "json" in content_type or body.lstrip()[:1] in (b"{", b"["):
        try:
            data = json.loads(body)
        except ValueError:
            raise RestError("ERROR_ARGUMENT", "Request body is not valid JSON") from None
        if isinstance(data, list):  # positional params of the old task.* methods
            data = {str(index): value for index, value in enumerate(data)}
        if not isinstance(data, dict):
            raise RestError("ERROR_ARGUMENT", "Request body must be a JSON object")
        params.update(data)
    else:
        try:
            params.update(parse_php_query(body))
        except FormError as exc:
            raise RestError("ERROR_ARGUMENT", str(exc)) from None
    return params


class RestEndpoint:
    def __init__(self, simulation: Simulation) -> None:
        self.simulation = simulation

    async def webhook_call(self, request: Request) -> Response:
        sim = self.simulation
        method = sim.methods.canonical(request.path_params["method"])
        bad_request: RestError | None = None
        try:
            params = await read_params(request)
        except RestError as error:
            params, bad_request = {}, error
        if not sim.authorized(request.path_params["user_id"], request.path_params["code"]):
            return self._refuse(method, params, RestError("NO_AUTH_FOUND"))
        if not sim.bucket.admit():
            return self._refuse(method, params, RestError("QUERY_LIMIT_EXCEEDED"))
        if bad_request is not None:
            return self._refuse(method, params, bad_request)
        try:
            reply = await sim.dispatcher.handle(method, params)
        except ConnectionDropped:
            sim.calls.record(method, params, http_status=None)
            return DroppedConnectionResponse()
        sim.calls.record(reply.method, params, http_status=reply.status, error=reply.error,
                         sub_calls=reply.sub_calls)
        return JSONResponse(reply.body, status_code=reply.status)

    async def token_call(self, request: Request) -> Response:
        """``/rest/{method}?auth=…`` is the OAuth form; the simulator only knows its webhook."""
        method = self.simulation.methods.canonical(request.path_params["method"])
        return self._refuse(method, {}, RestError("NO_AUTH_FOUND"))

    def _refuse(self, method: str, params: dict[str, Any], error: RestError) -> Response:
        self.simulation.calls.record(method, params, http_status=error.status, error=error.code)
        return JSONResponse(error.body(), status_code=error.status)


def create_app(config: SimulatorConfig) -> Starlette:
    simulation = Simulation(config)
    rest = RestEndpoint(simulation)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await simulation.events.start()
        try:
            yield
        finally:
            await simulation.events.stop()

    app = Starlette(
        routes=[
            Route("/rest/{user_id}/{code}/{method}", rest.webhook_call, methods=["GET", "POST"]),
            Route("/rest/{method}", rest.token_call, methods=["GET", "POST"]),
            Mount("/_sim", routes=control_routes(simulation)),
        ],
        lifespan=lifespan,
    )
    app.state.simulation = simulation
    return app
