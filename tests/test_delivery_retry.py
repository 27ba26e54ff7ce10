"""When a delivery that did not go out runs again.

A wait for our own REST budget is no failed attempt: the delivery runs again when the budget
allows, attempts untouched. Passing faults (a 500, an SMTP 451) are tried again within seconds,
the first three of a series standing for the configured schedule's first step; the later steps
are for failures that persist, and the dead-letter list comes when they run out.
"""

from __future__ import annotations

import time

import pytest

from b24notify.keys import task_member
from b24notify.workers.context import WorkerContext
from b24notify.workers.deliver import deliver
from b24notify.workers.retries import Failures, NextTry, next_try
from b24notify.workers.sync import TaskSync
from tests.support.pipeline import delivery_ids
from tests.support.servers import wait_for

SCHEDULE = (10.0, 60.0, 300.0, 1800.0, 7200.0)  # the default B24NOTIFY_DELIVERY_RETRY_SECONDS


def new_result(ctx: WorkerContext, user) -> list[str]:
    """A task with a new result, synced: its deliveries (chat, e-mail) wait in the outbox."""
    task = user.add_task()
    member = task_member(ctx.portal, task)
    for _ in range(2):  # first sight, then the result
        ctx.tasks.schedule(member, at=0)
        (claim,) = ctx.tasks.claim(1, 60, only=member)
        outcome = TaskSync(ctx).run(claim)
        if outcome.alerts:
            return [did for channel in ("chat", "email") for did in delivery_ids(outcome, channel)]
        user.comment(task, "Done", as_result=True)
    raise AssertionError("the result made no alert")


def attempt(ctx: WorkerContext, did: str) -> str:
    (claim,) = ctx.deliveries.claim(1, 60, only=did)
    return deliver(ctx, claim).status


def attempts(redis, keys, did: str) -> int:
    return int(redis.hget(keys.delivery(did), "attempts") or 0)


def due_at(ctx: WorkerContext, did: str) -> float:
    score = ctx.redis.zscore(ctx.deliveries.k.due, did)
    assert score is not None, f"{did} is not due"
    return float(score)


def settle(ctx: WorkerContext, did: str, timeout: float) -> list[str]:
    """Attempt ``did`` each time it falls due, until it is sent or dead; the statuses in order."""
    statuses: list[str] = []
    deadline = time.monotonic() + timeout
    while not statuses or statuses[-1] not in ("sent", "dead"):
        wait_for(lambda: due_at(ctx, did) <= time.time(), deadline - time.monotonic(),
                 f"{did} was not due again in time, after {statuses}")
        statuses.append(attempt(ctx, did))
    return statuses


def test_a_delivery_waiting_for_our_own_budget_goes_when_it_allows_without_an_attempt(ctx, user, simulator, redis,
                                                                                       keys):
    chat, _ = new_result(ctx, user)
    # Someone else spent the fleet's budget: the next request may go in 5.5 s, beyond the 5 s a
    # caller sleeps for it, so the job hears BUDGET_SPENT and no request goes out.
    ctx.client.guard.rate.penalize(5.5)
    asked = time.time()
    assert attempt(ctx, chat) == "deferred"
    assert attempts(redis, keys, chat) == 0
    assert asked + 5 <= due_at(ctx, chat) <= asked + 6.5  # the budget's wait, not the 10 s retry
    assert simulator.control.messages() == []

    assert settle(ctx, chat, timeout=10) == ["sent"]
    assert time.time() - asked < 5.5 + 1.5
    assert len(simulator.control.messages()) == 1
    assert attempts(redis, keys, chat) == 0


def test_a_doubtful_delivery_whose_lookup_waits_for_the_budget_still_looks_first(ctx, user, simulator, redis,
                                                                                   keys):
    chat, _ = new_result(ctx, user)
    redis.hset(keys.delivery(chat), "in_flight", "1")  # an earlier attempt got no answer
    ctx.client.guard.rate.penalize(5.5)
    assert attempt(ctx, chat) == "deferred"
    assert redis.hexists(keys.delivery(chat), "in_flight")  # it may still have been posted
    assert settle(ctx, chat, timeout=10) == ["sent"]
    assert len(simulator.control.calls("im.dialog.messages.get")["calls"]) == 1
    assert len(simulator.control.messages()) == 1


def test_three_server_errors_in_a_row_settle_within_seconds(ctx, user, simulator, redis, keys):
    chat, _ = new_result(ctx, user)
    simulator.control.add_faults({"method": "im.message.add", "error": "INTERNAL_SERVER_ERROR", "count": 3})
    started = time.monotonic()
    # The schedule is 10,60 here: before, three failures in a row dead-lettered the alert.
    assert settle(ctx, chat, timeout=15) == ["retry", "retry", "retry", "sent"]
    assert time.monotonic() - started < 9.5  # at most 1 + 2 + 4 s of waiting
    assert len(simulator.control.messages()) == 1  # a 500 may hide a post: each retry looked first
    assert attempts(redis, keys, chat) == 3


def test_three_greylisted_mails_in_a_row_settle_within_seconds(ctx, user, sink, redis, keys):
    _, mail = new_result(ctx, user)
    sink.refuse_next(3, code=451)
    started = time.monotonic()
    assert settle(ctx, mail, timeout=15) == ["retry", "retry", "retry", "sent"]
    assert time.monotonic() - started < 9.5
    assert len(sink.wait_for(1)) == 1


def test_a_failure_that_persists_follows_the_configured_schedule_to_the_dead_letter_list(ctx, user, sink, redis,
                                                                                         keys):
    _, mail = new_result(ctx, user)
    sink.refuse_next(20, code=451)
    for _ in range(3):  # quick retries first
        assert attempt(ctx, mail) == "retry"
        retry_at = due_at(ctx, mail)
        assert retry_at - time.time() < 4.5
        ctx.deliveries.clock = lambda at=retry_at: at  # time runs on to the retry
    assert attempt(ctx, mail) == "retry"  # the fourth failure in a row: it persists
    assert 59 <= due_at(ctx, mail) - time.time() <= 61  # the second configured step
    ctx.deliveries.clock = lambda: time.time() + 100
    assert attempt(ctx, mail) == "dead"  # the schedule (10,60) ran out
    assert attempts(redis, keys, mail) == 5
    assert b"451" in redis.hget(keys.delivery(mail), "last_error")


# -- the schedule itself ------------------------------------------------------------------------


def plan(count: int, early: int, since_first: float, *, transient: bool = True, draw: float = 0.5) -> NextTry | None:
    return next_try(SCHEDULE, Failures(count, early, 1000.0), 1000.0 + since_first, transient=transient, draw=draw)


def test_quick_retries_double_with_jitter():
    assert plan(1, 0, 0.0, draw=0.0) == NextTry(0.5, early=True)
    assert plan(1, 0, 0.0, draw=0.999).delay == pytest.approx(1.0, abs=0.01)
    assert plan(2, 1, 1.0, draw=0.0) == NextTry(1.0, early=True)
    assert plan(3, 2, 3.0, draw=0.999).delay == pytest.approx(4.0, abs=0.01)


def test_a_quick_retry_that_came_late_is_still_quick():
    # The retry waited 20 s (its worker was killed, or the budget was spent): still a passing fault.
    assert plan(2, 1, 20.0, draw=0.0) == NextTry(1.0, early=True)


def test_failures_that_persist_take_the_configured_steps_and_then_give_up():
    assert plan(4, 3, 7.0) == NextTry(60.0, early=False)  # three quick retries stood for the first step
    assert plan(5, 3, 67.0) == NextTry(300.0, early=False)
    assert plan(7, 3, 2200.0) == NextTry(7200.0, early=False)
    assert plan(8, 3, 9500.0) is None
    assert plan(2, 1, 61.0) == NextTry(60.0, early=False)  # a series older than a minute persists


def test_a_failure_someone_must_fix_waits_the_configured_steps_only():
    assert plan(1, 0, 0.0, transient=False) == NextTry(10.0, early=True)
    assert plan(2, 1, 10.0, transient=False) == NextTry(60.0, early=False)
    assert plan(6, 1, 9370.0, transient=False) is None  # as many attempts as the schedule always gave


def test_quick_retries_are_never_slower_than_the_first_step():
    assert next_try((0.5, 1.0), Failures(1, 0, 0.0), 0.0, transient=True, draw=0.999) == NextTry(0.5, early=True)
    assert next_try((), Failures(1, 0, 0.0), 0.0, transient=True, draw=0.5) is None  # no schedule, no retry
