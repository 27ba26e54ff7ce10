"""The simulator's Starlette app: the portal's REST endpoint, the OAuth token endpoint and the
``/_sim/`` control API.

REST calls come by POST (JSON or PHP-style form body) or GET (query string), two ways (docs/protocol.md §8):

- ``/rest/{user_id}/{code}/{method}[.json]``: an incoming webhook (the config's, or one made for
  another user with ``POST /_sim/webhooks``), acting as the webhook's user;
- ``/rest/{method}[.json]`` with ``auth=<access token>`` in the query or body: the OAuth
  application, acting as the token's user. The token is checked with the simulator's
  ``OAuthAuthority``: none is 401 ``NO_AUTH_FOUND``, an unknown or revoked one or one of another
  portal 401 ``invalid_token``, an expired one 401 ``expired_token``. The token never reaches the
  call log, and a batch's commands run with the batch's token.

Each request passes, in order: that auth check, the leaky bucket (503 ``QUERY_LIMIT_EXCEEDED``; a
batch counts once), then the dispatcher (faults, operating limit, the method). ``event.bind``,
``event.unbind`` and ``event.get`` answer only OAuth calls (``app_methods.py``).

``/oauth/token/`` stands in for ``oauth.bitrix.info``'s token endpoint (``token_endpoint.py``).
Simulators built with one shared authority are portals of one app: a token refreshed at either
simulator's endpoint works on the portal it belongs to, and only there.
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

from b24notify.devtools.simulator.auth import AUTH_PARAM, Caller, without_auth
from b24notify.devtools.simulator.config import SimulatorConfig
from b24notify.devtools.simulator.control import control_routes
from b24notify.devtools.simulator.dispatch import ConnectionDropped
from b24notify.devtools.simulator.errors import RestError
from b24notify.devtools.simulator.oauth import OAuthAuthority
from b24notify.devtools.simulator.simulation import Simulation
from b24notify.devtools.simulator.token_endpoint import TokenEndpoint
from b24notify.phpform import FormError, parse_php_query

WEBHOOK = "webhook"
OAUTH = "oauth"


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


def _query_params(request: Request) -> dict[str, Any]:
    """The query string alone, for finding ``auth`` when the body could not be read."""
    try:
        return parse_php_query(request.url.query)
    except FormError:
        return {}


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
        caller = sim.webhook_caller(request.path_params["user_id"], request.path_params["code"])
        if caller is None:
            return self._refuse(method, params, RestError("NO_AUTH_FOUND"), WEBHOOK)
        return await self._answer(method, params, bad_request, caller, WEBHOOK)

    async def token_call(self, request: Request) -> Response:
        """``/rest/{method}?auth=…``: an OAuth application's call (docs/protocol.md §8)."""
        sim = self.simulation
        method = sim.methods.canonical(request.path_params["method"])
        bad_request: RestError | None = None
        try:
            params = await read_params(request)
        except RestError as error:
            params, bad_request = _query_params(request), error
        token = params.get(AUTH_PARAM)
        params = without_auth(params)
        try:
            caller = sim.token_caller(token)
        except RestError as error:
            return self._refuse(method, params, error, OAUTH)
        return await self._answer(method, params, bad_request, caller, OAUTH)

    async def _answer(
        self, method: str, params: dict[str, Any], bad_request: RestError | None, caller: Caller, auth: str
    ) -> Response:
        """An authorised request: the bucket, then the dispatcher."""
        sim = self.simulation
        if not sim.bucket.admit():
            return self._refuse(method, params, RestError("QUERY_LIMIT_EXCEEDED"), auth, caller)
        if bad_request is not None:
            return self._refuse(method, params, bad_request, auth, caller)
        try:
            reply = await sim.dispatcher.handle(method, params, caller)
        except ConnectionDropped:
            sim.calls.record(method, params, http_status=None, auth=auth, user_id=caller.user_id)
            return DroppedConnectionResponse()
        sim.calls.record(reply.method, params, http_status=reply.status, error=reply.error,
                         sub_calls=reply.sub_calls, auth=auth, user_id=caller.user_id)
        return JSONResponse(reply.body, status_code=reply.status)

    def _refuse(
        self, method: str, params: dict[str, Any], error: RestError, auth: str, caller: Caller | None = None
    ) -> Response:
        self.simulation.calls.record(method, params, http_status=error.status, error=error.code, auth=auth,
                                     user_id=caller.user_id if caller else None)
        return JSONResponse(error.body(), status_code=error.status)


def create_app(config: SimulatorConfig, authority: OAuthAuthority | None = None) -> Starlette:
    """The app for one portal. Pass one ``authority`` to several apps to make them portals of one
    OAuth application; without it the simulator makes its own from the config's ``oauth_*`` fields."""
    simulation = Simulation(config, authority=authority)
    rest = RestEndpoint(simulation)
    tokens = TokenEndpoint(simulation.authority)

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
            Route("/oauth/token/", tokens.token, methods=["GET", "POST"]),
            Route("/oauth/token", tokens.token, methods=["GET", "POST"]),
            Mount("/_sim", routes=control_routes(simulation)),
        ],
        lifespan=lifespan,
    )
    app.state.simulation = simulation
    return app
