"""The dispatcher waits on the wake list, not a poll: a member made due by ``schedule`` is claimed
within milliseconds, though the poll is long; the reap and periodic cadences still hold. A real
Redis and a real dispatcher thread."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue

from b24notify.dueset import DueSet
from b24notify.keys import DELIVERIES, TASKS
from b24notify.workers.dispatcher import Dispatcher

LONG_POLL = 3.0  # without a wake-up, a due member would wait up to this


@pytest.fixture
def queue(redis, key_prefix) -> Iterator[Queue]:
    q = Queue(f"{key_prefix}-queue", connection=redis)
    yield q
    q.delete(delete_jobs=True)


def start_dispatcher(redis_url: str, redis: Redis, keys, queue: Queue, *, periodic=None) -> Dispatcher:
    dispatcher = Dispatcher(queue, DueSet(redis, keys, TASKS), DueSet(redis, keys, DELIVERIES), lease_seconds=60,
                            sync_batch=50, delivery_batch=50, poll_seconds=LONG_POLL, max_queued_jobs=1000,
                            periodic=periodic, wake=Redis.from_url(redis_url, socket_timeout=LONG_POLL + 10))
    dispatcher.start()
    return dispatcher


def wait_for(condition, timeout: float) -> float:
    """Seconds until ``condition`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.001)
    return time.monotonic() - started


def test_a_dispatcher_wakes_within_50_ms_of_a_member_becoming_due(redis_url, redis, keys, queue):
    dispatcher = start_dispatcher(redis_url, redis, keys, queue)
    tasks = DueSet(redis, keys, TASKS)
    try:
        time.sleep(0.2)  # it has made its first tick and waits now
        delays = []
        for i in range(10):
            member = f"p|{i}"
            time.sleep(0.05)
            tasks.schedule(member, debounce_cap=0)  # due now: as an event on a quiet task
            delays.append(wait_for(lambda m=member: redis.zscore(keys.lease(TASKS), m) is not None, LONG_POLL + 1))
    finally:
        dispatcher.stop()
    assert statistics.median(delays) < 0.05, delays
    assert max(delays) < 0.25, delays  # a shared 2-core machine: one slow wake-up, never a poll's wait


def test_an_event_through_the_schedule_script_wakes_the_dispatcher(redis_url, redis, keys, queue):
    """The event path proper: a debounced schedule whose leading edge makes it due now."""
    dispatcher = start_dispatcher(redis_url, redis, keys, queue)
    tasks = DueSet(redis, keys, TASKS)
    try:
        time.sleep(0.2)
        tasks.schedule("p|9", time.time() + 1.0, debounce_cap=5.0)
        delay = wait_for(lambda: redis.zscore(keys.lease(TASKS), "p|9") is not None, LONG_POLL + 1)
    finally:
        dispatcher.stop()
    assert delay < 0.25


def test_the_periodic_cadence_holds_while_the_dispatcher_waits(redis_url, redis, keys, queue):
    calls: list[float] = []
    dispatcher = start_dispatcher(redis_url, redis, keys, queue, periodic=lambda: calls.append(time.monotonic()))
    try:
        wait_for(lambda: len(calls) >= 3, 5.0)
    finally:
        dispatcher.stop()
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(0.9 < gap < 1.5 for gap in gaps), gaps  # every second, though the poll is 3 s
