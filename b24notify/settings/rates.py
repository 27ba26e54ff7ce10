"""A portal's REST rate limit, ``DRAIN/CAPACITY`` (``B24_RATE_LIMIT``, a portal's ``rate_limit``):
a plain value, part of the settings (docs/protocol.md §6)."""

from __future__ import annotations

import re
from dataclasses import dataclass

RATE_SPEC = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class RateLimit:
    """``drain`` requests per second, ``capacity`` requests of burst: "2/50", "5/250"."""

    drain: float
    capacity: int

    @classmethod
    def parse(cls, spec: str) -> RateLimit:
        match = RATE_SPEC.match(spec)
        if not match or float(match[1]) <= 0 or int(match[2]) < 1:
            raise ValueError("must look like DRAIN_PER_SECOND/CAPACITY, e.g. 2/50 or 5/250")
        return cls(float(match[1]), int(match[2]))

    def share(self, fraction: float) -> RateLimit:
        return RateLimit(self.drain * fraction, max(1, int(self.capacity * fraction)))
