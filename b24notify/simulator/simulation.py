"""One simulated portal with everything around it, wired together: the portal model and its REST
methods, the rate bucket and operating ledger, fault rules, the event queue and the call log.

The control API changes the simulation only through ``reconfigure`` and ``reset``, so a config
change reaches every part the same way.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

from b24notify.simulator.bucket import LeakyBucket, OperatingLedger
from b24notify.simulator.calllog import CallLog
from b24notify.simulator.config import SimulatorConfig
from b24notify.simulator.dispatch import Dispatcher
from b24notify.simulator.events import EventChaos, EventQueue, WebhookAuth
from b24notify.simulator.faults import FaultPlan
from b24notify.simulator.methods import PortalMethods
from b24notify.simulator.portal import Portal


def _auth(config: SimulatorConfig) -> WebhookAuth:
    return WebhookAuth(config.portal_domain, config.member_id, config.application_token)


def _chaos(config: SimulatorConfig) -> EventChaos:
    return EventChaos(config.event_drop_probability, config.event_duplicate_probability,
                      config.event_reorder_max_ms)


class Simulation:
    def __init__(
        self,
        config: SimulatorConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.initial_config = config
        self.config = config
        self._monotonic = monotonic
        self._wall = wall
        # The queue outlives resets: its background task runs for the server's whole life.
        self.events = EventQueue(
            _auth(config),
            handler_url=config.handler_url,
            handler_id=config.event_handler_id,
            chaos=_chaos(config),
            seed=config.seed,
            timeout_seconds=config.event_timeout_seconds,
            wall=wall,
        )
        self._build()

    def _build(self) -> None:
        config = self.config
        self.portal = Portal(new_card=config.new_card)
        self.bucket = LeakyBucket(config.bucket_capacity, config.bucket_drain_per_second, self._monotonic)
        self.ledger = OperatingLedger(limit=config.operating_limit_seconds, cost=config.operating_cost_seconds,
                                      clock=self._wall)
        self.faults = FaultPlan(config.seed)
        self.calls = CallLog(self._wall)
        self.methods = PortalMethods(self.portal, self.events.emit, caller_id=config.webhook_user_id)
        self.dispatcher = Dispatcher(self.methods, self.faults, self.ledger, wall=self._wall)

    def authorized(self, user_id: str, code: str) -> bool:
        return user_id == str(self.config.webhook_user_id) and hmac.compare_digest(
            code.encode(), self.config.webhook_code.encode()
        )

    def reconfigure(self, changes: dict[str, Any]) -> SimulatorConfig:
        """Apply live config changes (raises InvalidConfig); a new ``seed`` restarts chaos draws."""
        self.config = self.config.with_changes(changes)
        self._apply()
        if "seed" in changes:
            self.faults.reseed(self.config.seed)
            self.events.reseed(self.config.seed)
        return self.config

    def reset(self) -> None:
        """Back to the state right after start: seed users only, startup config, empty logs."""
        self.config = self.initial_config
        self._build()
        self._apply()
        self.events.clear()
        self.events.reseed(self.config.seed)

    def _apply(self) -> None:
        config = self.config
        self.bucket.reconfigure(config.bucket_capacity, config.bucket_drain_per_second)
        self.ledger.limit = config.operating_limit_seconds
        self.ledger.cost = config.operating_cost_seconds
        self.portal.new_card = config.new_card
        self.events.auth = _auth(config)
        self.events.handler_url = config.handler_url
        self.events.handler_id = config.event_handler_id
        self.events.chaos = _chaos(config)
        self.events.timeout_seconds = config.event_timeout_seconds
