"""Reconciliation: notice results that came with no event (pinned from the context menu or through
``tasks.task.result.addFromComment``, docs/protocol.md §2) or whose event was lost (Bitrix24 never
re-sends, §1).

Two parts, both run from every worker's dispatcher loop and both paid from their own slice of the
portal's REST budget (``B24_RECONCILE_SHARE``, default 20 %):

- the **watch set**: tasks seen lately (events, syncs, the sweep), each re-read on an adaptive
  schedule — every ``hot`` seconds while active within the last hour, every ``warm`` seconds
  within the last day, every ``cold`` seconds after that, dropped after ``idle`` days or once the
  task is completed with every result closed. Polls go through the normal task due set, so they
  share ``batch`` requests with event-driven syncs (50 tasks a request).
- the **discovery sweep**: ``tasks.task.list`` filtered on ``>=CHANGED_DATE`` since the last sweep,
  paged, finds tasks that changed without us hearing of it, and adds them to the watch set. One
  worker sweeps at a time (a Redis lock).

The bound this gives is in docs/guarantees.md.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis

from b24notify.dueset import DueSet
from b24notify.keys import Keys, as_text, task_member
from b24notify.rest.budget import RateBudget
from b24notify.rest.client import RestClient
from b24notify.rest.errors import B24Error, BudgetSpent
from b24notify.scripts import POLL_WATCH
from b24notify.settings import Settings
from b24notify.settings.rates import RateLimit

log = logging.getLogger(__name__)

BATCH_TASKS = 50
SWEEP_OVERLAP_SECONDS = 120  # CHANGED_DATE is to the second and clocks differ: look back a little
MAX_SWEEP_PAGES = 200
SWEEP_FRACTION = 0.1  # of the reconcile slice, for the discovery sweep
# A sweep skips a changed task that a sync read this long after its CHANGED_DATE: room for the
# date's whole seconds and for the portal's clock to run a little behind ours. A task skipped
# wrongly is not lost: it is watched, so the next poll (30 s while active) reads it.
CLOCK_SKEW_SECONDS = 2.0
SWEEP_LOCK_SECONDS = 30  # a sweeper that died holds the lock no longer than this
COMPLETED = 5


@dataclass(frozen=True)
class WatchPolicy:
    hot_interval: float = 30.0
    warm_interval: float = 300.0
    cold_interval: float = 1800.0
    hot_age: float = 3600.0
    warm_age: float = 86400.0
    idle_age: float = 7 * 86400.0
    sweep_interval: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> WatchPolicy:
        return cls(
            hot_interval=settings.b24notify_watch_hot_seconds,
            warm_interval=settings.b24notify_watch_warm_seconds,
            cold_interval=settings.b24notify_watch_cold_seconds,
            idle_age=settings.b24notify_watch_idle_days * 86400,
            sweep_interval=settings.b24notify_sweep_seconds,
        )


class Watch:
    """The watch set of one portal (two zsets: next poll time, last activity)."""

    def __init__(self, redis: Redis, keys: Keys, portal: str, policy: WatchPolicy,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.portal = portal
        self.policy = policy
        self.clock = clock
        self.next_key = keys.watch_next(portal)
        self.active_key = keys.watch_active(portal)
        self.status_key = keys.watch_status(portal)
        self.synced_key = keys.watch_synced(portal)

    def touch(self, task_ids: list[int], *, active: bool, synced_at: float | None = None) -> None:
        """Watch these tasks; ``active`` marks them as active now (an event, a change);
        ``synced_at``: a sync just read them, seeing every change made before that moment."""
        if not task_ids:
            return
        now = self.clock()
        pipe = self.redis.pipeline(transaction=False)
        if synced_at:
            pipe.zadd(self.synced_key, {str(t): synced_at for t in task_ids}, gt=True)
        pipe.zadd(self.next_key, {str(t): now + self.policy.hot_interval for t in task_ids}, nx=True)
        if active:
            pipe.zadd(self.active_key, {str(t): now for t in task_ids})
        else:
            pipe.zadd(self.active_key, {str(t): now for t in task_ids}, nx=True)
        pipe.execute()

    def forget(self, task_id: int) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for key in (self.next_key, self.active_key, self.synced_key):
            pipe.zrem(key, str(task_id))
        pipe.hdel(self.status_key, str(task_id))
        pipe.execute()

    def record_seen(self, seen: dict[int, str]) -> list[int]:
        """Store what the sweep saw of each task ("status|changedDate"); return the tasks whose
        entry is new or different, i.e. the ones that changed since the last sweep."""
        if not seen:
            return []
        ids = list(seen)
        before = self.redis.hmget(self.status_key, [str(t) for t in ids])
        changed = [t for t, old in zip(ids, before, strict=True) if old is None or as_text(old) != seen[t]]
        self.redis.hset(self.status_key, mapping={str(t): v for t, v in seen.items()})
        return changed

    def read_since(self, task_ids: list[int], changed_at: dict[int, float], skew: float) -> list[int]:
        """The tasks a sync has read after their last change (with ``skew`` seconds to spare for the
        portal's clock): re-reading them would only repeat what we know."""
        if not task_ids:
            return []
        synced = self.redis.zmscore(self.synced_key, [str(t) for t in task_ids])
        return [t for t, at in zip(task_ids, synced, strict=True)
                if at is not None and t in changed_at and changed_at[t] + skew < float(at)]

    def is_completed(self, task_id: int) -> bool:
        entry = self.redis.hget(self.status_key, str(task_id))
        return entry is not None and as_text(entry).split("|", 1)[0] == str(COMPLETED)

    def due_count(self) -> int:
        return int(self.redis.zcount(self.next_key, "-inf", self.clock()))

    def size(self) -> int:
        return int(self.redis.zcard(self.next_key))


class Reconciler:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        client: RestClient,
        tasks: DueSet,
        watch: Watch,
        *,
        portal_limit: RateLimit,
        share: float,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.client = client
        self.tasks = tasks
        self.watch = watch
        self.portal = watch.portal
        # Our slice of the portal's bucket: `share` of its drain, a small burst. It only decides
        # how much reconciliation may ask for; the requests themselves still pass the fleet budget.
        # The slice is split: polls get 90 % of it, the sweep 10 %, each with its own limiter, so
        # neither starves the other (bench/reconcile.py at 1,000 active tasks showed both ways).
        poll_share, sweep_share = share * (1 - SWEEP_FRACTION), share * SWEEP_FRACTION
        poll_limit = RateLimit(portal_limit.drain * poll_share, max(3, int(portal_limit.capacity * poll_share)))
        self.budget = RateBudget(redis, keys.reconcile_budget(self.portal), poll_limit, max_wait=0, margin=0)
        self.sweep_budget = RateBudget(redis, keys.reconcile_budget(self.portal) + ":sweep",
                                       RateLimit(portal_limit.drain * sweep_share, 2), max_wait=0, margin=0)
        self._poll = POLL_WATCH.on(redis)

    def tick(self) -> None:
        self.sweep_if_due()
        self.poll_watched()

    def poll_watched(self) -> int:
        """Ask for a sync of the watched tasks whose poll is due, one batch request's worth (50
        tasks) per unit of the reconcile budget."""
        due = self.watch.due_count()
        if not due:
            return 0
        units = 0
        for _ in range(math.ceil(due / BATCH_TASKS)):
            if self.budget.try_take() > 0:
                break
            units += 1
        if not units:
            return 0
        p = self.watch.policy
        scheduled, dropped = self._poll(
            watch_next=self.watch.next_key, watch_active=self.watch.active_key, task_due=self.tasks.k.due,
            watch_synced=self.watch.synced_key, watch_status=self.watch.status_key, task_lease=self.tasks.k.lease,
            task_pending=self.tasks.k.pending, now=self.watch.clock(), limit=units * BATCH_TASKS,
            member_prefix=f"{self.portal}|",
            hot_interval=p.hot_interval, warm_interval=p.warm_interval, cold_interval=p.cold_interval,
            hot_age=p.hot_age, warm_age=p.warm_age, idle_age=p.idle_age,
        )
        if dropped:
            log.info("event=watch.dropped portal=%s tasks=%d reason=idle", self.portal, dropped)
        return int(scheduled)

    def sweep_if_due(self) -> int:
        """Every ``sweep_interval`` seconds one worker lists the tasks changed since the last sweep.

        A sweep is a cursor in Redis (since, next page, started at): pages are read as the sweep's
        budget allows, over as many ticks as it takes, and the mark moves to the sweep's start
        only once every page was read. Returns the tasks found changed in this tick."""
        now = self.watch.clock()
        cursor_key = self.keys.sweep_cursor(self.portal)
        cursor = self.redis.get(cursor_key)
        if cursor is None:
            last = self.redis.get(self.keys.sweep_last(self.portal))
            if last is not None and now - float(as_text(last)) < self.watch.policy.sweep_interval:
                return 0
            since = float(as_text(last)) if last is not None else now - self.watch.policy.hot_age
            state = {"since": since - SWEEP_OVERLAP_SECONDS, "start": 0, "started_at": now}
        else:
            state = json.loads(cursor)
        if self.redis.exists(self.keys.halted(self.portal)):
            return 0  # calls to the portal are paused (a permanent error): no sweep either
        if not self.redis.set(self.keys.sweep_lock(self.portal), "1", nx=True, ex=SWEEP_LOCK_SECONDS):
            return 0
        try:
            found, next_start = self._sweep(float(state["since"]), int(state["start"]))
        except (B24Error, BudgetSpent) as exc:
            log.warning("event=sweep.failed portal=%s code=%s", self.portal, getattr(exc, "code", type(exc).__name__))
            return 0
        finally:
            self.redis.delete(self.keys.sweep_lock(self.portal))
        if next_start is None:
            pipe = self.redis.pipeline()
            pipe.set(self.keys.sweep_last(self.portal), repr(float(state["started_at"])))
            pipe.delete(cursor_key)
            pipe.execute()
        else:
            state["start"] = next_start
            self.redis.set(cursor_key, json.dumps(state), ex=3600)
        return found

    def _sweep(self, since: float, start: int) -> tuple[int, int | None]:
        """Read pages from ``start`` while the sweep budget allows. Returns the tasks found
        changed and where to go on (None: the listing is done)."""
        changed_since = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
        next_start: int | None = start
        pages = 0
        found: list[int] = []
        seen: dict[int, str] = {}  # task id -> "status|changedDate"
        while next_start is not None and pages < MAX_SWEEP_PAGES:
            if self.sweep_budget.try_take() > 0:
                break  # out of the sweep's slice: the cursor goes on from here next tick
            answer = self.client.call_page("tasks.task.list", {
                "filter": {">=CHANGED_DATE": changed_since},
                "select": ["ID", "STATUS", "CHANGED_DATE"],
                "params": {"WITH_RESULT_INFO": "Y"},
                "order": {"ID": "asc"},
                "start": next_start,
            })
            rows = answer.result.get("tasks", []) if isinstance(answer.result, dict) else []
            for row in rows if isinstance(rows, list) else []:
                try:
                    task_id = int(row.get("id") or row.get("ID"))
                    status = int(row.get("status") or row.get("STATUS") or 0)
                except (TypeError, ValueError, AttributeError):
                    continue
                found.append(task_id)
                seen[task_id] = f"{status}|{row.get('changedDate') or row.get('CHANGED_DATE') or ''}"
            next_start, pages = answer.next, pages + 1
        changed = self.watch.record_seen(seen)
        self.watch.touch(changed, active=True)
        # A task a sync read after its CHANGED_DATE (an event brought it in) has nothing new.
        known = set(self.watch.read_since(changed, _changed_at(seen), CLOCK_SKEW_SECONDS))
        for task_id in (t for t in changed if t not in known):
            # A changed task is read now, not at its next poll: that is the point of the sweep.
            # Tasks the overlap lists again, unchanged since the last sweep, are left alone.
            self.tasks.schedule(task_member(self.portal, task_id), trigger="sweep")
        if changed:
            log.info("event=sweep.found portal=%s changed=%d already_read=%d listed=%d pages=%d done=%s",
                     self.portal, len(changed), len(known), len(found), pages, next_start is None)
        return len(changed), next_start


def _changed_at(seen: dict[int, str]) -> dict[int, float]:
    """CHANGED_DATE of each task as unix seconds, where it parses (ISO 8601 with an offset)."""
    stamps: dict[int, float] = {}
    for task_id, entry in seen.items():
        text = entry.split("|", 1)[1] if "|" in entry else ""
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            continue
        if moment.tzinfo is not None:
            stamps[task_id] = moment.timestamp()
    return stamps
