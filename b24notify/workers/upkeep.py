"""The minute's upkeep: the few removals no job owns, done by one worker of the fleet at a time.

Every Redis key has an owner that removes it or a TTL (the schema in ``keys.py``). Most owners are
the jobs themselves (a delivery sent, a task dropped, a watch entry gone idle); what is left is
done here, once a minute, under a lock:

- dead-letter entries whose delivery record expired leave the list (``DeadLetters.expire``);
- due-set leftovers nothing will read again: a drop mark or a failure count of a task that is
  neither due, nor being worked on, nor parked (a task of a portal that left, say);
- an uninstalled portal's per-task state and counters (``RemovedPortals``);
- parked tasks nobody brought back within the keep window (``B24NOTIFY_RESULTS_KEEP_DAYS``): a
  task deleted, or never changed again, after it was parked would otherwise stay for good. Its
  state is kept as any quiet task's (it expires too); a later event starts it afresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis import Redis

from b24notify.deadletter import DeadLetters
from b24notify.dueset import DueSetKeys, ParkedMember
from b24notify.keys import TASKS, Keys, as_text
from b24notify.portals.registry import RemovedPortals
from b24notify.scripts import LEFTOVERS

log = logging.getLogger(__name__)

UPKEEP_SECONDS = 60.0
PARKED_KEEP_SECONDS = 30 * 86400.0


class Upkeep:
    def __init__(self, redis: Redis, keys: Keys, *, every: float = UPKEEP_SECONDS,
                 parked_keep_seconds: float = PARKED_KEEP_SECONDS,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.parked_keep_seconds = parked_keep_seconds
        self.keys = keys
        self.every = every
        self.clock = clock  # paces this process's looks
        self.wall = wall  # the time dead letters are aged by
        self.dead = DeadLetters(redis, keys)
        self.removed = RemovedPortals(redis, keys)
        self._leftovers = LEFTOVERS.on(redis)  # lua/leftovers.lua
        self._next = 0.0

    def run_if_due(self) -> bool:
        """Run if this process has not looked for a minute and no other worker ran it within one."""
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + self.every
        if not self.redis.set(self.keys.upkeep_lock(), "1", nx=True, ex=max(1, int(self.every))):
            return False
        self.run()
        return True

    def run(self) -> dict[str, int]:
        tasks = DueSetKeys.of(self.keys, TASKS)
        done = {
            "deadletter": self.dead.expire(self.wall()),
            "leftovers": int(self._leftovers(due=tasks.due, lease=tasks.lease, parked=tasks.parked,
                                             attempts=tasks.attempts, drop=self.keys.drop())),
            "portal_keys": self.removed.clean(self.wall()),
            "parked": self._forget_old_parked(tasks),
        }
        if any(done.values()):
            log.info("event=upkeep.done %s", " ".join(f"{k}={v}" for k, v in done.items()))
        return done

    def _forget_old_parked(self, tasks: DueSetKeys) -> int:
        """Parked records (and the strikes kept with them) older than the keep window."""
        horizon = self.wall() - self.parked_keep_seconds
        old = [as_text(member) for member, raw in self.redis.hgetall(tasks.parked).items()
               if ParkedMember.from_json(as_text(member), raw).at < horizon]
        if not old:
            return 0
        pipe = self.redis.pipeline()
        pipe.hdel(tasks.parked, *old)
        pipe.hdel(tasks.strikes, *old)
        pipe.execute()
        log.info("event=upkeep.parked_forgotten members=%d older_than_days=%.0f", len(old),
                 self.parked_keep_seconds / 86400)
        return len(old)
