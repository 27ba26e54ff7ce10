"""Wait until a Redis replica holds what this connection wrote (``WAIT``), where one exists.

Replication is asynchronous: a write the primary acknowledged can be missing on the replica that
a failover promotes. Before a chat message leaves, its delivery's "in flight" mark must survive
that, or a failover right after the send sends it again (docs/guarantees.md "Redis failover")."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis import Redis
from redis.client import Pipeline

log = logging.getLogger(__name__)

# With no replica connected, WAIT would spend its whole timeout on every call: skip it this long
# before asking the primary again (a replica that comes back resyncs everything written meanwhile).
NO_REPLICA_RECHECK_SECONDS = 30.0


class ReplicaWait:
    def __init__(self, timeout_ms: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_ms = timeout_ms
        self.clock = clock
        self._no_replica_until = 0.0

    def add_to(self, pipe: Pipeline) -> bool:
        """Queue a ``WAIT`` as ``pipe``'s last command; False when none is due (off, or no replica
        was connected a moment ago)."""
        if not self.timeout_ms or self.clock() < self._no_replica_until:
            return False
        pipe.wait(1, self.timeout_ms)
        return True

    def held(self, acked: int, redis: Redis) -> bool:
        """After the WAIT: whether what was written may be trusted to outlive a failover — a replica
        acknowledged it, or there is no replica to promote. False: a replica is connected but did
        not acknowledge in time (lagging, frozen, cut off)."""
        if acked >= 1:
            return True
        if connected_replicas(redis) > 0:
            return False
        if self.clock() >= self._no_replica_until:
            log.warning("event=redis.no_replica recheck=%.0f reason=%r", NO_REPLICA_RECHECK_SECONDS,
                        "the primary has no replica connected: chat sends go without waiting for one")
        self._no_replica_until = self.clock() + NO_REPLICA_RECHECK_SECONDS
        return True


def connected_replicas(redis: Redis) -> int:
    """Replicas the primary still counts. One that stopped answering is dropped after the
    primary's ``repl-timeout`` (60 s by default)."""
    return int(redis.info("replication").get("connected_slaves", 0))
