"""Redis losing b24notify's state (a restart without AOF, an eviction, a failover, a flush): every
process starts over silently from the moment it notices — no result is alerted again — and says
so once in its log, on /readyz and in ``b24notify doctor``. Tools that only look (``doctor``,
``sync --task``) never set ``connected_at``."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from starlette.testclient import TestClient

from b24notify.devtools.simulator import RunningSimulator
from b24notify.doctor import run_doctor
from b24notify.keys import task_member
from b24notify.service.app import create_app
from b24notify.workers.context import WorkerContext, build_context
from b24notify.workers.manual import sync_now
from b24notify.workers.sync import SyncOutcome, TaskSync
from tests.support.pipeline import deliver_all, sync
from tests.support.servers import wait_for


def run_due_syncs(ctx: WorkerContext) -> list[SyncOutcome]:
    outcomes = []
    while claims := ctx.tasks.claim(50, 60):
        outcomes += TaskSync(ctx).run_many(claims)
    return outcomes


def chat_messages(simulator: RunningSimulator) -> list[str]:
    return [str(m["message"]) for m in simulator.control.messages()]


def lose_everything(redis: Redis, prefix: str) -> None:
    """What a Redis restart without persistence does to b24notify (its keys only: the test
    database is shared)."""
    for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        redis.delete(key)


def next_second() -> None:
    """The portal stamps results to the second: let the clock leave the second of the last one."""
    now = int(time.time())
    wait_for(lambda: int(time.time()) > now, 2, "clock")


def state_lost_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("event=state.lost")]


def test_redis_losing_its_data_alerts_no_result_again(ctx, simulator, sink, user, redis, key_prefix):
    task = user.add_task("Sign the supply contract")
    other = user.add_task("Ship the order")
    sync(ctx, task)
    sync(ctx, other)
    user.comment(task, "The client signed", as_result=True)
    sync(ctx, task)  # one sync a result: three alerts, not a digest of two and one alert
    user.comment(task, "The client paid", as_result=True)
    user.comment(other, "Shipped", as_result=True)
    sync(ctx, task)
    sync(ctx, other)
    assert sorted(deliver_all(ctx)) == ["sent"] * 6  # three results, chat and mail each
    next_second()

    lose_everything(redis, key_prefix)
    user.comment(task, "A plain comment: its event brings the task back")
    sync(ctx, task)
    run_due_syncs(ctx)  # the run again under the new start, if the first one was refused
    assert ctx.reconciler is not None
    ctx.reconciler.sweep_if_due()  # lists every task changed in the last hour: both come back
    run_due_syncs(ctx)

    assert deliver_all(ctx) == []
    assert len(chat_messages(simulator)) == 3
    assert len(sink.messages) == 3
    user.comment(task, "A result pinned after the loss is told", as_result=True)
    assert [c.kind.value for c in sync(ctx, task).diff.changes] == ["new"]
    assert sorted(deliver_all(ctx)) == ["sent", "sent"]


def test_a_state_loss_is_told_once_by_each_process_and_reported_by_readyz_and_doctor(
        ctx, settings, simulator, user, redis, key_prefix, caplog):
    caplog.set_level(logging.INFO, logger="b24notify")
    task = user.add_task()
    sync(ctx, task)
    with TestClient(create_app(settings)) as web:
        ready = web.get("/readyz")
        assert ready.status_code == 200 and "state" not in ready.json()
        lose_everything(redis, key_prefix)

        assert ctx.state.verify() is False  # the worker's once-a-second look finds it
        for _ in range(3):
            assert ctx.state.verify() is True
            sync(ctx, task)
        assert len(state_lost_lines(caplog)) == 1

        for _ in range(2):
            ready = web.get("/readyz")
            assert ready.status_code == 200  # the web started over with the workers: it is ready
            assert "state lost" in ready.json()["state"]
        assert len(state_lost_lines(caplog)) == 2  # the worker's line and the web's, once each

    lines: list[str] = []
    assert run_doctor(settings, lines.append) == 0  # alerts flow again; doctor says what happened
    (state,) = [line for line in lines if line[6:].startswith("state")]
    assert state.startswith("warn") and "state lost" in state and "AOF" in state


def test_a_worker_that_knew_the_lost_state_starts_over_when_a_new_process_kept_a_stale_start(
        ctx, settings, simulator, user, redis, keys, key_prefix):
    task = user.add_task()
    sync(ctx, task)
    user.comment(task, "Done", as_result=True)
    sync(ctx, task)
    assert sorted(deliver_all(ctx)) == ["sent", "sent"]
    next_second()
    # An eviction that took the epoch and the task's results but left connected_at (an hour old).
    connected_at = redis.get(keys.connected_at(ctx.portal))
    lose_everything(redis, key_prefix)
    redis.set(keys.connected_at(ctx.portal), connected_at)
    started_after = build_context(settings, redis)  # knows nothing of a loss: it just started
    try:
        # Alone, it would take the surviving hour-old start for the truth.
        assert started_after.baseline().connected_at < datetime.now(UTC) - timedelta(minutes=30)
        ctx.state.verify()  # the older worker knew the old epoch: it starts the state over
        for worker in (started_after, ctx):
            outcome = sync(worker, task)
            if outcome.status == "stale":  # refused under a replaced epoch: runs again
                (outcome,) = run_due_syncs(worker)
            assert outcome.diff is not None and outcome.diff.changes == ()
        assert deliver_all(ctx) == []
        assert len(chat_messages(simulator)) == 1
    finally:
        started_after.close()


def test_doctor_and_a_manual_sync_before_going_live_set_no_connected_at(settings, simulator, user, redis, keys):
    task = user.add_task()
    user.comment(task, "Pinned before we went live", as_result=True)
    lines: list[str] = []
    assert run_doctor(settings, lines.append) == 0, lines
    assert sync_now(settings, task, send=False) == 0
    assert redis.get(keys.connected_at(settings.portal)) is None
    assert redis.exists(keys.epoch()) == 0

    next_second()
    before_start = time.time()
    worker = build_context(settings, redis)  # the first serving process: it connects the portal now
    try:
        worker.state.verify()  # its first tick
        other = user.add_task()
        user.comment(other, "Pinned before the worker saw the task", as_result=True)
        stored = redis.get(keys.connected_at(settings.portal))
        assert stored is not None and worker.baseline().connected_at.timestamp() >= before_start
        outcome = sync(worker, other)
        assert [c.kind.value for c in outcome.diff.changes] == ["new"]
    finally:
        worker.close()


def test_a_commit_under_another_epoch_writes_nothing(ctx, simulator, user, redis, keys):
    task = user.add_task()
    sync(ctx, task)
    user.comment(task, "Done", as_result=True)
    member = task_member(ctx.portal, task)
    ctx.tasks.schedule(member, at=0)
    (claim,) = ctx.tasks.claim(1, 60, only=member)
    job = TaskSync(ctx)
    redis.hset(keys.epoch(), "id", "someone-elses")  # the state started over after the job's read
    before = redis.hgetall(keys.results(ctx.portal, task))
    outcome = job.run(claim)
    assert outcome.status == "stale"
    assert redis.hgetall(keys.results(ctx.portal, task)) == before
    assert redis.zcard(ctx.deliveries.k.due) == 0
    assert redis.zscore(ctx.tasks.k.due, member) is not None  # it runs again, under the new epoch
