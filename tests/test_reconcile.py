"""Reconciliation: results that arrive with no event are found by polling the watch set and by
the discovery sweep, within the reconcile share of the REST budget."""

from __future__ import annotations

import time

from b24notify.keys import task_member
from b24notify.settings.rates import RateLimit
from b24notify.workers.reconcile import Reconciler, Watch, WatchPolicy
from b24notify.workers.sync import TaskSync
from tests.support.clock import Clock


def run_due_syncs(ctx) -> list:
    outcomes = []
    while claims := ctx.tasks.claim(50, 60):
        outcomes += TaskSync(ctx).run_many(claims)
    return outcomes


def test_watched_tasks_are_polled_often_when_active_rarely_when_quiet_and_dropped_when_idle(redis, keys, ctx):
    clock = Clock()
    policy = WatchPolicy(hot_interval=30, warm_interval=300, cold_interval=1800, hot_age=3600, warm_age=86400,
                         idle_age=7 * 86400)
    watch = Watch(redis, keys, "p", policy, clock=clock)
    reconciler = Reconciler(redis, keys, ctx.client, ctx.tasks, watch, portal_limit=RateLimit(2, 50), share=0.2)
    watch.touch([1], active=True)
    clock.now -= 2 * 3600
    watch.touch([2], active=True)  # active two hours ago
    clock.now -= 10 * 86400
    watch.touch([3], active=True)  # active ten days ago
    clock.now += 10 * 86400 + 2 * 3600 + 31
    assert reconciler.poll_watched() == 2  # 1 and 2 are due; 3 is idle and leaves the watch set
    assert redis.zscore(watch.next_key, "1") == clock.now + 30
    assert redis.zscore(watch.next_key, "2") == clock.now + 300
    assert redis.zscore(watch.next_key, "3") is None
    due = {m.decode() for m in redis.zrange(ctx.tasks.k.due, 0, -1)}
    assert due == {"p|1", "p|2"}


def test_a_poll_of_a_task_being_synced_waits_for_that_sync_instead_of_a_second_worker(redis, keys, ctx):
    """A due entry beside a live lease was claimed by another worker at once: two syncs of one
    task at the same time, the first one's commit refused. The poll leaves a pending mark: one
    more run, after the current one."""
    clock = Clock()
    watch = Watch(redis, keys, "p", WatchPolicy(hot_interval=30), clock=clock)
    reconciler = Reconciler(redis, keys, ctx.client, ctx.tasks, watch, portal_limit=RateLimit(2, 50), share=0.2)
    watch.touch([1, 2], active=True)
    ctx.tasks.schedule("p|1", at=0)
    (running,) = ctx.tasks.claim(10, 60, only="p|1")  # task 1's sync is running
    clock.now += 31
    assert reconciler.poll_watched() == 2
    assert {m.decode() for m in redis.zrange(ctx.tasks.k.due, 0, -1)} == {"p|2"}  # not 1: it is running
    assert [c.member for c in ctx.tasks.claim(10, 60)] == ["p|2"]
    ctx.tasks.complete(running)
    assert [c.member for c in ctx.tasks.claim(10, 60, only="p|1")] == ["p|1"]  # the run after it


def test_reconcile_polls_stay_inside_their_budget_share(redis, keys, ctx):
    clock = Clock()
    watch = Watch(redis, keys, "p", WatchPolicy(hot_interval=1), clock=clock)
    reconciler = Reconciler(redis, keys, ctx.client, ctx.tasks, watch, portal_limit=RateLimit(2, 50), share=0.2)
    watch.touch(list(range(1, 1001)), active=True)
    clock.now += 2
    # The slice is 0.4 requests/s; polls get 90 % of it (0.36/s) with a burst of 9 (18 % of 50):
    # at most 9 batch requests' worth (450 tasks) now, then nothing until it refills.
    assert reconciler.poll_watched() == 450
    assert reconciler.poll_watched() == 0


def test_result_pinned_without_an_event_is_found_by_the_watch_poll(ctx, simulator, user):
    task = user.add_task()
    run_due_syncs_for(ctx, task)
    comment = user.comment(task, "Ready for review")
    user.pin(comment)  # no event at all
    later = time.time() + 31
    ctx.watch.clock = ctx.tasks.clock = lambda: later  # the task's poll (every 30 s while active) comes due
    assert ctx.reconciler is not None
    ctx.reconciler.budget.try_take = lambda: 0.0  # type: ignore[method-assign]
    assert ctx.reconciler.poll_watched() == 1
    (outcome,) = run_due_syncs(ctx)
    assert [c.kind.value for c in outcome.diff.changes] == ["new"]


def run_due_syncs_for(ctx, task_id: int) -> None:
    ctx.tasks.schedule(task_member(ctx.portal, task_id), at=0)
    run_due_syncs(ctx)


def test_discovery_sweep_finds_tasks_we_never_heard_of(ctx, simulator, user, redis, keys):
    task = user.add_task("Changed while we were not listening")
    assert ctx.reconciler is not None
    assert ctx.reconciler.sweep_if_due() >= 1
    assert redis.zscore(keys.watch_next(ctx.portal), str(task)) is not None
    outcomes = {o.task_id: o for o in run_due_syncs(ctx)}
    assert outcomes[task].status == "synced"
    assert ctx.reconciler.sweep_if_due() == 0  # not again before the sweep interval
    sweeps = [c for c in simulator.control.calls()["calls"] if c["method"] == "tasks.task.list"]
    assert len(sweeps) == 1
    assert sweeps[0]["params"]["filter"][">=CHANGED_DATE"]


def test_completed_task_with_closed_results_leaves_the_watch_set(ctx, simulator, user, redis, keys):
    task = user.add_task()
    user.comment(task, "Done", as_result=True)
    run_due_syncs_for(ctx, task)
    assert redis.zscore(keys.watch_next(ctx.portal), str(task)) is not None
    user.complete(task)
    ctx.reconciler.sweep_if_due()  # sees status 5
    run_due_syncs(ctx)  # the sweep asked for a sync: the result closes, the task leaves
    assert redis.zscore(keys.watch_next(ctx.portal), str(task)) is None


def test_an_unfinished_sweep_keeps_its_place_and_unchanged_tasks_are_not_read_again(ctx, simulator, user, redis,
                                                                                     keys):
    assert ctx.reconciler is not None
    tasks = [user.add_task() for _ in range(3)]
    ctx.reconciler.sweep_budget.try_take = lambda: 1.0  # type: ignore[method-assign]  # slice spent
    assert ctx.reconciler.sweep_if_due() == 0
    assert redis.get(keys.sweep_last(ctx.portal)) is None  # the mark did not move
    assert redis.get(keys.sweep_cursor(ctx.portal)) is not None  # the sweep goes on from here
    ctx.reconciler.sweep_budget.try_take = lambda: 0.0  # type: ignore[method-assign]
    assert ctx.reconciler.sweep_if_due() == 3
    assert redis.get(keys.sweep_cursor(ctx.portal)) is None
    run_due_syncs(ctx)
    redis.delete(keys.sweep_last(ctx.portal))  # the next sweep lists the same, unchanged tasks
    assert ctx.reconciler.sweep_if_due() == 0
    assert ctx.tasks.counts()["due"] == 0
    user.call("tasks.task.update", {"taskId": tasks[0], "fields": {"TITLE": "renamed"}})
    redis.delete(keys.sweep_last(ctx.portal))
    time.sleep(1.1)  # CHANGED_DATE is to the second
    user.call("tasks.task.update", {"taskId": tasks[0], "fields": {"TITLE": "renamed again"}})
    assert ctx.reconciler.sweep_if_due() == 1


def test_a_long_sweep_goes_on_page_by_page_across_ticks(ctx, simulator, user, redis, keys):
    assert ctx.reconciler is not None
    for _ in range(120):  # three pages of 50
        user.add_task()
    allowance = iter([0.0, 1.0] * 10)  # one page per tick, then the slice is spent
    ctx.reconciler.sweep_budget.try_take = lambda: next(allowance)  # type: ignore[method-assign]
    found = [ctx.reconciler.sweep_if_due() for _ in range(3)]
    assert found == [50, 50, 20]
    starts = [c["params"]["start"] for c in simulator.control.calls()["calls"] if c["method"] == "tasks.task.list"]
    assert starts == [0, 50, 100]  # never back to page one
    assert redis.get(keys.sweep_last(ctx.portal)) is not None


def test_the_sweep_skips_tasks_a_sync_read_after_their_change(ctx, simulator, user, redis, keys):
    read, changed = user.add_task("Read after its change"), user.add_task("Changed after our read")
    now = time.time()
    # A sync read the first 10 s after its CHANGED_DATE; the second changed after our last read.
    redis.zadd(keys.watch_synced(ctx.portal), {str(read): now + 10, str(changed): now - 60})
    assert ctx.reconciler is not None
    assert ctx.reconciler.sweep_if_due() >= 2
    due = {m.decode() for m in redis.zrange(keys.due("tasks"), 0, -1)}
    assert task_member(ctx.portal, changed) in due
    assert task_member(ctx.portal, read) not in due
    assert redis.zscore(keys.watch_next(ctx.portal), str(read)) is not None  # still watched: polled later
