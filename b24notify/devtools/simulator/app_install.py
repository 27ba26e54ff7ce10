"""The application as installed on one simulated portal: its ``application_token``, the installing
user, and the handlers it bound with ``event.bind`` (docs/protocol.md §10).

Bindings belong to the install: uninstalling the app (or resetting the simulator) drops them.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

from b24notify.devtools.simulator.oauth import TokenResponse


class DuplicateBinding(ValueError):
    pass


@dataclass(frozen=True)
class EventBinding:
    id: int  # sent as event_handler_id
    event: str  # upper case, as events name themselves
    handler: str
    auth_type: int = 0  # the user to authorise the handler as; 0: whoever fired the event

    def to_json(self) -> dict[str, Any]:
        """The row as ``event.get`` lists it."""
        return {"event": self.event, "handler": self.handler, "auth_type": str(self.auth_type), "offline": 0}


@dataclass
class InstalledApp:
    member_id: str
    user_id: int  # who installed it
    application_token: str = field(default_factory=lambda: secrets.token_hex(16))
    bindings: list[EventBinding] = field(default_factory=list)
    # The access token last put into events per acting user, reused while the authority accepts it.
    event_tokens: dict[int, TokenResponse] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), init=False, repr=False)

    def bind(self, event: str, handler: str, auth_type: int = 0) -> EventBinding:
        name = event.upper()
        if any(b.event == name and b.handler == handler for b in self.bindings):
            raise DuplicateBinding(f"{name} -> {handler}")
        binding = EventBinding(next(self._ids), name, handler, auth_type)
        self.bindings.append(binding)
        return binding

    def unbind(self, event: str, handler: str, auth_type: int = 0) -> int:
        """Remove the matching bindings; how many there were. ``auth_type`` 0 matches only handlers
        bound without one (§10)."""
        name = event.upper()
        kept = [b for b in self.bindings if (b.event, b.handler, b.auth_type) != (name, handler, auth_type)]
        removed = len(self.bindings) - len(kept)
        self.bindings = kept
        return removed

    def handlers_for(self, event: str) -> list[EventBinding]:
        return [b for b in self.bindings if b.event == event.upper()]

    def to_json(self) -> dict[str, Any]:
        return {"member_id": self.member_id, "user_id": self.user_id, "application_token": self.application_token,
                "bindings": [{"id": b.id, **b.to_json()} for b in self.bindings]}
