"""``event.bind``, ``event.unbind`` and ``event.get`` (docs/protocol.md §10): application-only methods.

Through the incoming webhook they answer 401 ``WRONG_AUTH_TYPE`` (§8: "Some methods need the app
context and don't work through a webhook"). Only online handlers are simulated.
"""

from __future__ import annotations

from collections.abc import Callable

from b24notify.devtools.simulator.app_events import ON_APP_UNINSTALL
from b24notify.devtools.simulator.app_install import DuplicateBinding, InstalledApp
from b24notify.devtools.simulator.auth import Caller
from b24notify.devtools.simulator.errors import RestError
from b24notify.devtools.simulator.events import TASK_EVENTS
from b24notify.devtools.simulator.methods import Answer, Handler
from b24notify.devtools.simulator.params import Params, as_int, param

BINDABLE_EVENTS = frozenset({*TASK_EVENTS, ON_APP_UNINSTALL})


class EventMethods:
    def __init__(self, installed: Callable[[], InstalledApp | None]) -> None:
        self._installed = installed

    def handlers(self) -> list[tuple[str, Handler]]:
        return [("event.bind", self.bind), ("event.unbind", self.unbind), ("event.get", self.get)]

    def _app(self, caller: Caller) -> InstalledApp:
        if not caller.oauth:
            raise RestError("WRONG_AUTH_TYPE")
        app = self._installed()
        if app is None:  # a token issued straight from the authority, with no install on this portal
            raise RestError("ERROR_CORE", "The application is not installed on this portal")
        return app

    def bind(self, params: Params, caller: Caller) -> Answer:
        app = self._app(caller)
        event, handler, auth_type = _binding_params(params)
        if event not in BINDABLE_EVENTS:
            raise RestError("ERROR_EVENT_NOT_FOUND", f"Event not found: {event}")
        if str(param(params, "event_type") or "online").lower() != "online":
            raise RestError("ERROR_CORE", "The simulator has no offline event queue")
        try:
            app.bind(event, handler, auth_type)
        except DuplicateBinding:
            raise RestError("ERROR_CORE", "Unable to set event handler: Handler already binded") from None
        return Answer(True)

    def unbind(self, params: Params, caller: Caller) -> Answer:
        app = self._app(caller)
        event, handler, auth_type = _binding_params(params)
        return Answer({"count": app.unbind(event, handler, auth_type)})

    def get(self, params: Params, caller: Caller) -> Answer:
        return Answer([b.to_json() for b in self._app(caller).bindings])


def _binding_params(params: Params) -> tuple[str, str, int]:
    event = str(param(params, "event") or "").strip().upper()
    if not event:
        raise RestError("ERROR_ARGUMENT", "Event name is required")
    handler = str(param(params, "handler") or "").strip()
    if not handler:
        raise RestError("ERROR_ARGUMENT", "Handler is required")
    raw_auth_type = param(params, "auth_type")
    auth_type = 0 if raw_auth_type in (None, "") else as_int(raw_auth_type)
    if auth_type is None or auth_type < 0:
        raise RestError("ERROR_ARGUMENT", "auth_type must be a user id")
    return event, handler, auth_type
