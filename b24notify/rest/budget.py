"""The portal's REST budget, shared by the fleet (docs/protocol.md §6).

The portal counts every request in a leaky bucket — capacity 50, draining 2/s (Enterprise 250 and
5/s) — per portal and source IP, shared with every other integration. We keep our own fleet-wide
GCRA limiter in Redis, sized to the bucket minus a reserve for the portal's other integrations,
so the product alone never triggers ``QUERY_LIMIT_EXCEEDED``. When the portal says 503 anyway
(someone else spent it), ``penalize`` pushes the shared clock forward: every worker backs off,
not only the one that saw it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis

from b24notify.rest.errors import BudgetSpent
from b24notify.scripts import GCRA
from b24notify.settings.rates import RateLimit

JITTER_MARGIN = 2


class RateBudget:
    def __init__(
        self,
        redis: Redis,
        key: str,
        limit: RateLimit,
        *,
        max_wait: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        margin: int = JITTER_MARGIN,
    ) -> None:
        self.key = key
        self.limit = limit
        self.max_wait = max_wait
        self._sleep = sleep
        self._script = GCRA.on(redis)
        self._emission = 1.0 / limit.drain
        # Requests reach the portal a little later, and less evenly, than we count them here: keep
        # a few requests of the burst unused so that jitter never tips the portal's bucket over.
        burst = max(1, limit.capacity - margin)
        self._tau = (burst - 1) * self._emission

    def try_take(self) -> float:
        """Spend one request if allowed now; else return how long to wait."""
        return float(self._script(tat=self.key, emission=self._emission, tau=self._tau, action="take", seconds=0))

    def take(self) -> None:
        """Spend one request, sleeping up to ``max_wait`` in all; raise BudgetSpent beyond it,
        so that a job reschedules itself instead of holding a worker."""
        waited = 0.0
        while True:
            wait = self.try_take()
            if wait <= 0:
                return
            if waited + wait > self.max_wait:
                raise BudgetSpent(wait)
            self._sleep(wait)
            waited += wait

    def penalize(self, seconds: float) -> None:
        self._script(tat=self.key, emission=self._emission, tau=self._tau, action="penalize", seconds=seconds)
