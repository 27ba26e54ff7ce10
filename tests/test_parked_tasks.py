"""A task that fails every time is parked with its reason instead of looping for ever: whether its
sync raises, or its run never finishes (the worker dies or hangs on it, and the reaper gives the
lease back). The operator sees it in ``doctor`` and in the metrics; its next event gives it one
more run."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from b24notify.doctor import run_doctor
from b24notify.dueset import Claim
from b24notify.keys import task_member
from b24notify.metrics import decode_counters, render
from b24notify.workers.context import WorkerContext
from b24notify.workers.sync import SyncOutcome, TaskSync
from tests.support.tamper import batch_answers, tampered

MAX_ATTEMPTS = 3
SHORT_LEASE = 0.2  # seconds: a run that dies is reaped quickly


@pytest.fixture
def strict(ctx: WorkerContext) -> WorkerContext:
    """The test context, parking a task at its third failure in a row."""
    settings = ctx.settings.model_copy(update={"b24notify_task_max_attempts": MAX_ATTEMPTS})
    return dataclasses.replace(ctx, settings=settings)


def run_now(ctx: WorkerContext, task_id: int) -> SyncOutcome:
    """Ask for a run now (as the task's next event would) and run it."""
    member = task_member(ctx.portal, task_id)
    ctx.tasks.schedule(member, at=0)
    (claim,) = ctx.tasks.claim(1, 60, only=member)
    return TaskSync(ctx).run(claim)


def poison(ctx: WorkerContext, task_id: int) -> None:
    """A stored state this version cannot read: syncing the task raises, every time."""
    ctx.redis.hset(ctx.keys.results(ctx.portal, task_id), "999", "{not json")


def die_with(ctx: WorkerContext, claims: list[Claim], timeout: float = 10.0) -> None:
    """The job carrying ``claims`` died: nothing ran, nothing was released. Wait until the reaper
    (as the dispatcher runs it) has given every lease back."""
    waiting = {c.member for c in claims}
    deadline = time.monotonic() + timeout
    while waiting:
        assert time.monotonic() < deadline, f"leases never expired: {waiting}"
        waiting -= set(ctx.tasks.reap())
        time.sleep(0.02)


def metrics_text(ctx: WorkerContext) -> str:
    return render(decode_counters(ctx.redis.hgetall(ctx.keys.metrics())), {}).decode()


def test_a_task_that_fails_every_run_is_parked_with_its_reason(strict, settings, user):
    task = user.add_task()
    run_now(strict, task)
    poison(strict, task)
    assert [run_now(strict, task).status for _ in range(MAX_ATTEMPTS)] == ["failed", "failed", "parked"]
    member = task_member(strict.portal, task)
    assert strict.tasks.counts() == {"due": 0, "leased": 0, "pending": 0}  # no more runs on its own
    (parked,) = strict.tasks.parked()
    assert (parked.member, parked.cause, parked.strikes) == (member, "error", MAX_ATTEMPTS)
    assert "JSONDecodeError" in parked.reason
    # What the operator sees.
    lines: list[str] = []
    assert run_doctor(settings, lines.append) == 1
    assert any(line.startswith("FAIL") and "1 parked tasks" in line for line in lines), lines
    assert any(member in line and "JSONDecodeError" in line for line in lines), lines
    assert f'b24notify_tasks_parked_total{{cause="error",portal="{strict.portal}"}} 1.0' in metrics_text(strict)


def test_a_task_whose_answers_cannot_be_read_is_retried_then_parked(strict, user):
    task = user.add_task()

    def unreadable(method: str, payload: dict[str, Any]) -> dict[str, Any]:
        answers = batch_answers(payload)
        if method == "batch" and f"r{task}" in answers:
            answers[f"r{task}"] = "Access denied."  # a string where the list of results belongs
        return payload

    garbled = tampered(strict, unreadable)
    assert [run_now(garbled, task).status for _ in range(MAX_ATTEMPTS)] == ["failed", "failed", "parked"]
    (parked,) = strict.tasks.parked()
    assert parked.cause == "malformed" and "unreadable result list" in parked.reason


def test_a_task_whose_run_never_finishes_is_parked_and_spares_its_batch(strict, user):
    good, bad = user.add_task("Good"), user.add_task("Kills its worker")
    members = {task_member(strict.portal, t): t for t in (good, bad)}
    for member in members:
        strict.tasks.schedule(member, at=0)
    for _ in range(2):  # the batch's job dies twice: one strike each
        claims = strict.tasks.claim(10, SHORT_LEASE)
        assert {c.member for c in claims} == set(members)
        die_with(strict, claims)
    outcomes: dict[str, list[str]] = {m: [] for m in members}
    for _ in range(10):  # from now on each runs alone
        claims = strict.tasks.claim(10, SHORT_LEASE)
        if not claims:
            break
        (claim,) = claims
        if claim.member == task_member(strict.portal, bad) and not outcomes[claim.member]:
            die_with(strict, claims)  # it kills its worker again ...
            outcomes[claim.member].append("died")
        else:
            outcomes[claim.member].append(TaskSync(strict).run(claim).status)
    assert outcomes[task_member(strict.portal, good)] == ["synced"]
    assert outcomes[task_member(strict.portal, bad)] == ["died", "parked"]  # ... and is not run a fourth time
    (parked,) = strict.tasks.parked()
    assert (parked.member, parked.cause) == (task_member(strict.portal, bad), "died")
    assert "lease expired" in parked.reason
    assert strict.tasks.counts() == {"due": 0, "leased": 0, "pending": 0}
    assert 'cause="died"' in metrics_text(strict)


def test_a_parked_task_gets_one_more_run_from_its_next_event(strict, user):
    task = user.add_task()
    run_now(strict, task)
    poison(strict, task)
    for _ in range(MAX_ATTEMPTS):
        run_now(strict, task)
    assert strict.tasks.parked()
    # Its next event: one run, and one more failure parks it again at once.
    assert run_now(strict, task).status == "parked"
    # Fixed (here: the unreadable entry is gone): the next event's run goes through and un-parks it.
    strict.redis.hdel(strict.keys.results(strict.portal, task), "999")
    user.comment(task, "Done", as_result=True)
    outcome = run_now(strict, task)
    assert outcome.status == "synced" and len(outcome.alerts) == 1
    assert strict.tasks.parked() == []
    assert strict.tasks.strikes([task_member(strict.portal, task)]) == {}


def test_max_attempts_leave_room_for_a_batch_that_died_twice(make_settings):
    from b24notify.settings import ConfigError

    assert make_settings().b24notify_task_max_attempts == 8
    with pytest.raises(ConfigError, match="B24NOTIFY_TASK_MAX_ATTEMPTS"):
        make_settings(b24notify_task_max_attempts=2)
