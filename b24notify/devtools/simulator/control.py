"""The ``/_sim/`` control API: what tests and operators use to look inside the simulator and steer it.

Plain JSON with snake_case keys (this is our API, not the portal's). No webhook check, no bucket,
no faults: it must keep working while the REST side is being made to fail.

People: ``GET/POST /users`` list and add users, ``POST /users/{id}`` (or PATCH) changes one
(``name``, ``last_name``, ``email``, ``active``); ``POST /webhooks`` ``{"user_id": n}`` makes that
user's incoming webhook (``GET /webhooks`` lists them), so a test can act as them.
``GET /notifications[?user=ID]``: per user, the notifications shown now and every one added.

The OAuth application: ``POST /app/install`` and ``/app/uninstall`` install and remove it on this
portal, sending ONAPPINSTALL / ONAPPUNINSTALL and answering once the handler did; ``GET /app``
shows the install and its ``event.bind`` handlers; ``GET /oauth`` the authority's counters and
token requests (never a token); ``POST /oauth/expire`` expires every access token issued so far.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from b24notify.devtools.simulator.config import InvalidConfig
from b24notify.devtools.simulator.events import Delivery
from b24notify.devtools.simulator.faults import FaultRule, InvalidFaultRule
from b24notify.devtools.simulator.oauth import PortalConflict
from b24notify.devtools.simulator.portal import Portal, UserNotFound
from b24notify.devtools.simulator.simulation import Simulation

MAX_WAIT_SECONDS = 60.0


class BadControlRequest(ValueError):
    pass


def plain(record: Any) -> dict[str, Any]:
    """A dataclass as JSON-ready data, dates as ISO 8601."""
    return {
        key: value.isoformat(timespec="seconds") if isinstance(value, datetime) else
        list(value) if isinstance(value, tuple) else value
        for key, value in dataclasses.asdict(record).items()
    }


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError:
        raise BadControlRequest("body is not valid JSON") from None


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _user_fields(body: Any, *, required: bool) -> dict[str, Any]:
    """``name``, ``last_name``, ``email`` (strings, may be empty but for a new user's name) and
    ``active`` (a boolean) of a control request, checked."""
    if not isinstance(body, dict):
        raise BadControlRequest("expected a JSON object of user fields")
    unknown = set(body) - {"id", "name", "last_name", "email", "active"}
    if unknown:
        raise BadControlRequest(f"unknown user fields: {', '.join(sorted(unknown))}")
    fields: dict[str, Any] = {}
    for key in ("name", "last_name", "email"):
        if body.get(key) is not None:
            if not isinstance(body[key], str):
                raise BadControlRequest(f"{key} must be a string")
            fields[key] = body[key]
    if body.get("active") is not None:
        if not isinstance(body["active"], bool):
            raise BadControlRequest("active must be true or false")
        fields["active"] = body["active"]
    if required and not str(fields.get("name") or "").strip():
        raise BadControlRequest("a user needs at least a name")
    return fields


def notification_log(portal: Portal, user_id: int | None = None) -> dict[str, Any]:
    """Per user (``{"503": {"shown": [...], "history": [...]}}``): the notifications their list
    shows now, after TAG replacement, and every one ever added for them, removed ones marked
    (``removed``, ``replaced_by``); ``notifications`` is the whole history in order."""
    history = [n for n in portal.notifications if user_id is None or n.user_id == user_id]
    users: dict[str, dict[str, list[dict[str, Any]]]] = {}
    if user_id is not None:
        users[str(user_id)] = {"shown": [], "history": []}
    for notification in history:
        entry = users.setdefault(str(notification.user_id), {"shown": [], "history": []})
        entry["history"].append(notification.to_json())
        if not notification.removed:
            entry["shown"].append(notification.to_json())
    return {"users": users, "notifications": [n.to_json() for n in history]}


def _outcome(delivery: Delivery) -> dict[str, Any]:
    return {"handler": delivery.handler, "delivered": delivery.outcome == "sent", "status": delivery.status_code}


class ControlApi:
    def __init__(self, simulation: Simulation) -> None:
        self.simulation = simulation

    async def messages(self, request: Request) -> JSONResponse:
        return JSONResponse({"messages": [plain(m) for m in self.simulation.portal.messages]})

    async def notifications(self, request: Request) -> JSONResponse:
        raw_user = request.query_params.get("user")
        if raw_user is not None and not raw_user.strip().isdigit():
            return _bad("user must be a user id")
        user_id = None if raw_user is None else int(raw_user)
        return JSONResponse(notification_log(self.simulation.portal, user_id))

    async def calls(self, request: Request) -> JSONResponse:
        return JSONResponse(self.simulation.calls.to_json(request.query_params.get("method")))

    async def events(self, request: Request) -> JSONResponse:
        events = self.simulation.events
        return JSONResponse({"events": [d.to_json() for d in events.deliveries], "pending": events.pending})

    async def wait_events(self, request: Request) -> JSONResponse:
        """Block until the outbound queue is empty (``{"timeout": seconds}``, default 5)."""
        try:
            body = await _json_body(request)
            timeout = min(MAX_WAIT_SECONDS, float(body.get("timeout", 5.0)))
        except (BadControlRequest, AttributeError, TypeError, ValueError) as exc:
            return _bad(f"expected {{\"timeout\": seconds}}: {exc}")
        idle = await self.simulation.events.wait_idle(timeout)
        return JSONResponse({"idle": idle, "pending": self.simulation.events.pending})

    async def faults(self, request: Request) -> JSONResponse:
        plan = self.simulation.faults
        if request.method == "DELETE":
            plan.clear()
        elif request.method == "POST":
            try:
                body = await _json_body(request)
                raw_rules = body.get("rules", [body]) if isinstance(body, dict) else body
                rules = [FaultRule.from_json(raw) for raw in raw_rules]
            except (BadControlRequest, InvalidFaultRule, AttributeError, TypeError) as exc:
                return _bad(str(exc))
            for rule in rules:
                plan.add(rule)
        return JSONResponse({"rules": [rule.to_json() for rule in plan.rules]})

    async def config(self, request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                body = await _json_body(request)
                if not isinstance(body, dict):
                    raise BadControlRequest("expected a JSON object of config fields")
                self.simulation.reconfigure(body)
            except (BadControlRequest, InvalidConfig) as exc:
                return _bad(str(exc))
        return JSONResponse(self.simulation.config.to_json())

    async def state(self, request: Request) -> JSONResponse:
        portal = self.simulation.portal
        return JSONResponse({
            "new_card": portal.new_card,
            "tasks": [plain(t) for t in sorted(portal.tasks.values(), key=lambda t: t.id)],
            "comments": [plain(c) for c in sorted(portal.comments.values(), key=lambda c: c.id)],
            "results": [plain(r) for r in sorted(portal.results.values(), key=lambda r: r.id)],
            "users": [plain(u) for u in sorted(portal.users.values(), key=lambda u: u.id)],
        })

    async def users(self, request: Request) -> JSONResponse:
        portal = self.simulation.portal
        if request.method == "GET":
            return JSONResponse({"users": [plain(u) for u in sorted(portal.users.values(), key=lambda u: u.id)]})
        try:
            body = await _json_body(request)
            fields = _user_fields(body, required=True)
            user_id = None if body.get("id") is None else int(body["id"])
            if user_id is not None and (user_id <= 0 or user_id in portal.users):
                return _bad(f"user id {user_id} is taken or not positive", 409)
            user = portal.add_user(fields.pop("name"), **fields, user_id=user_id)
        except (BadControlRequest, TypeError, ValueError) as exc:
            return _bad(str(exc))
        return JSONResponse(plain(user), status_code=201)

    async def user(self, request: Request) -> JSONResponse:
        """Change a user: ``{"name", "last_name", "email", "active"}``, any of them."""
        portal = self.simulation.portal
        try:
            user_id = int(request.path_params["user_id"])
            body = await _json_body(request)
            fields = _user_fields(body, required=False)
            if "id" in body:
                raise BadControlRequest("a user's id cannot change")
            user = portal.update_user(user_id, **fields)
        except UserNotFound:
            return _bad("no such user", 404)
        except (BadControlRequest, TypeError, ValueError) as exc:
            return _bad(str(exc))
        return JSONResponse(plain(user))

    async def webhooks(self, request: Request) -> JSONResponse:
        """``POST {"user_id": n}``: that user's incoming webhook (made the first time)."""
        sim = self.simulation
        if request.method == "POST":
            try:
                body = await _json_body(request)
                if not isinstance(body, dict):
                    raise BadControlRequest('expected {"user_id": n}')
                user_id = int(body["user_id"])
                sim.add_webhook(user_id)
            except UserNotFound:
                return _bad("no such user", 404)
            except (BadControlRequest, KeyError, TypeError, ValueError) as exc:
                return _bad(f'expected {{"user_id": n}}: {exc}')
            return JSONResponse(_webhook_json(sim, user_id))
        return JSONResponse({"webhooks": [_webhook_json(sim, u) for u in sorted(sim.webhooks)]})

    async def reset(self, request: Request) -> JSONResponse:
        self.simulation.reset()
        return JSONResponse({"ok": True})

    async def app(self, request: Request) -> JSONResponse:
        installed = self.simulation.app
        return JSONResponse({"installed": installed is not None, "handler_url": self.simulation.config.app_handler_url,
                             **(installed.to_json() if installed else {"bindings": []})})

    async def install_app(self, request: Request) -> JSONResponse:
        """``{"handler_url": url, "user_id": 1}``, both optional; ``handler_url`` becomes the
        config's ``app_handler_url``."""
        sim = self.simulation
        try:
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise BadControlRequest("expected a JSON object")
            user_id = int(body.get("user_id") or 1)
            if "handler_url" in body:
                sim.reconfigure({"app_handler_url": body["handler_url"]})
            installed, delivery = await sim.install_app(user_id)
        except (BadControlRequest, InvalidConfig, TypeError, ValueError) as exc:
            return _bad(str(exc), 409 if isinstance(exc, PortalConflict) else 400)
        return JSONResponse({"application_token": installed.application_token, "member_id": installed.member_id,
                             **_outcome(delivery)})

    async def uninstall_app(self, request: Request) -> JSONResponse:
        member_id = self.simulation.app.member_id if self.simulation.app else None
        deliveries = await self.simulation.uninstall_app()
        if deliveries is None:
            return _bad("the app is not installed", 409)
        first = _outcome(deliveries[0])
        return JSONResponse({"member_id": member_id, "delivered": all(_outcome(d)["delivered"] for d in deliveries),
                             "status": first["status"], "deliveries": [_outcome(d) for d in deliveries]})

    async def oauth(self, request: Request) -> JSONResponse:
        authority = self.simulation.authority
        return JSONResponse({"refreshes": authority.refreshes, "invalid_grants": authority.invalid_grants,
                             "requests": [r.to_json() for r in authority.requests()]})

    async def expire_tokens(self, request: Request) -> JSONResponse:
        self.simulation.authority.expire_all()
        return JSONResponse({"ok": True})


def _webhook_json(simulation: Simulation, user_id: int) -> dict[str, Any]:
    # The simulator's webhook codes are fixed test values, not secrets (see serve_forever's log).
    return {"user_id": user_id, "url": simulation.webhook_url(user_id)}


def control_routes(simulation: Simulation) -> list[Route]:
    api = ControlApi(simulation)
    return [
        Route("/messages", api.messages, methods=["GET"]),
        Route("/notifications", api.notifications, methods=["GET"]),
        Route("/calls", api.calls, methods=["GET"]),
        Route("/events", api.events, methods=["GET"]),
        Route("/events/wait", api.wait_events, methods=["POST"]),
        Route("/faults", api.faults, methods=["GET", "POST", "DELETE"]),
        Route("/config", api.config, methods=["GET", "POST"]),
        Route("/state", api.state, methods=["GET"]),
        Route("/users", api.users, methods=["GET", "POST"]),
        Route("/users/{user_id}", api.user, methods=["POST", "PATCH"]),
        Route("/webhooks", api.webhooks, methods=["GET", "POST"]),
        Route("/reset", api.reset, methods=["POST"]),
        Route("/app", api.app, methods=["GET"]),
        Route("/app/install", api.install_app, methods=["POST"]),
        Route("/app/uninstall", api.uninstall_app, methods=["POST"]),
        Route("/oauth", api.oauth, methods=["GET"]),
        Route("/oauth/expire", api.expire_tokens, methods=["POST"]),
    ]
