"""Login attempts per client address: after ``MAX_FAILURES`` wrong passwords within ``WINDOW``
seconds, every login from that address is refused (429) for ``BLOCK`` seconds, the right password
included. Kept in Redis under the key prefix (with TTLs), so every web process sees the same.

The address is ``request.client.host``: behind a reverse proxy that is the proxy, unless uvicorn
takes the client from ``X-Forwarded-For`` (it does for the proxies ``--forwarded-allow-ips`` /
``FORWARDED_ALLOW_IPS`` names; default 127.0.0.1).
"""

from __future__ import annotations

import time
import uuid

from redis import Redis

MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60
BLOCK_SECONDS = 15 * 60


class LoginLimiter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix  # the key prefix (B24NOTIFY_KEY_PREFIX)

    def _failures(self, address: str) -> str:
        return f"{self.prefix}:console:login:failures:{address}"

    def _blocked(self, address: str) -> str:
        return f"{self.prefix}:console:login:blocked:{address}"

    def blocked_for(self, address: str) -> int:
        """Seconds the address stays refused (0: it may try)."""
        ttl = int(self.redis.ttl(self._blocked(address)))
        return max(ttl, 0) if ttl != -1 else BLOCK_SECONDS

    def failed(self, address: str, now: float | None = None) -> bool:
        """Count a wrong password; True when the address is now refused."""
        now = time.time() if now is None else now
        key = self._failures(address)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zremrangebyscore(key, "-inf", now - WINDOW_SECONDS)
        pipe.zadd(key, {uuid.uuid4().hex: now})
        pipe.zcard(key)
        pipe.expire(key, WINDOW_SECONDS)
        count = int(pipe.execute()[2])
        if count >= MAX_FAILURES:
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(self._blocked(address), "1", ex=BLOCK_SECONDS)
            pipe.delete(key)
            pipe.execute()
            return True
        return False

    def succeeded(self, address: str) -> None:
        self.redis.delete(self._failures(address))
