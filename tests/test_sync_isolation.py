"""What one task's trouble may not do to the others, or to what we know of it: a task whose sync
fails leaves its batch alone, a time without an offset or a list cut short is no failure at all,
and a task out of reach for a while comes back where it left off."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from b24notify.diff import ChangeKind, StoredResult
from b24notify.dueset import Claim
from b24notify.keys import task_member
from b24notify.settings import ConfigError
from b24notify.workers.context import WorkerContext
from b24notify.workers.portal_reads import MAX_RESULT_PAGES
from b24notify.workers.sync import SyncOutcome, TaskSync
from tests.support.tamper import batch_answers, tampered


def claim_all(ctx: WorkerContext, task_ids: list[int]) -> list[Claim]:
    for task_id in task_ids:
        ctx.tasks.schedule(task_member(ctx.portal, task_id), at=0)
    return ctx.tasks.claim(len(task_ids), 60)


def sync(ctx: WorkerContext, task_id: int) -> SyncOutcome:
    (outcome,) = TaskSync(ctx).run_many(claim_all(ctx, [task_id]))
    return outcome


def test_one_task_that_cannot_be_synced_does_not_hold_back_its_batch(ctx, user, redis, keys):
    good, bad = user.add_task("Good"), user.add_task("Bad")
    TaskSync(ctx).run_many(claim_all(ctx, [good, bad]))  # both known now
    for task_id in (good, bad):
        user.comment(task_id, "Done", as_result=True)
    # A stored state this version cannot read: diffing the task raises, every time.
    redis.hset(keys.results(ctx.portal, bad), "999", "{not json")
    outcomes = {o.task_id: o for o in TaskSync(ctx).run_many(claim_all(ctx, [good, bad]))}
    assert outcomes[good].status == "synced" and len(outcomes[good].alerts) == 1
    assert redis.zcard(keys.due("deliveries")) == 2  # the good task's alert is queued: chat and e-mail
    assert outcomes[bad].status == "failed" and "JSONDecodeError" in outcomes[bad].detail
    assert ctx.tasks.counts()["leased"] == 0  # no lease left to expire and be run again blindly
    due_at = redis.zscore(keys.due("tasks"), task_member(ctx.portal, bad))
    assert due_at is not None and due_at > ctx.clock()  # the bad one is retried later, with backoff


def strip_offsets(task_id: int):
    """The portal sends this task's result times without an offset ("2026-03-01T09:30:00")."""

    def edit(method: str, payload: dict[str, Any]) -> dict[str, Any]:
        if method == "batch":
            for row in batch_answers(payload).get(f"r{task_id}") or []:
                row["createdAt"], row["updatedAt"] = row["createdAt"][:19], row["updatedAt"][:19]
        return payload

    return edit


def test_a_result_time_without_an_offset_is_read_in_the_portal_zone(ctx, user):
    plain, naive = user.add_task("Plain"), user.add_task("No offset")
    for task_id in (plain, naive):
        user.comment(task_id, "Done", as_result=True)  # created after we connected: NEW
    outcomes = {o.task_id: o for o in TaskSync(tampered(ctx, strip_offsets(naive))).run_many(
        claim_all(ctx, [plain, naive]))}
    assert [o.status for o in outcomes.values()] == ["synced", "synced"]
    (alert,) = outcomes[naive].alerts
    assert alert.kind is ChangeKind.NEW
    # The simulated portal keeps UTC: read in the default zone (UTC), the time is exactly right.
    assert alert.result.created_at == datetime.fromisoformat(user.results(naive)[0]["createdAt"])


def test_portal_timezone_must_be_an_iana_name(make_settings):
    assert make_settings(b24_portal_timezone="Europe/Berlin").b24_portal_timezone == "Europe/Berlin"
    with pytest.raises(ConfigError, match="B24_PORTAL_TIMEZONE"):
        make_settings(b24_portal_timezone="Berlin+2")


def pages_for_ever(method: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A portal whose result lists always say there is a next page."""
    if method == "batch" and isinstance(payload.get("result"), dict):
        payload["result"]["result_next"] = {key: 50 for key in batch_answers(payload) if key.startswith("r")}
    elif method == "tasks.task.result.list":
        payload["next"] = 50
    return payload


def test_a_result_list_cut_short_is_said_and_forgets_nothing(ctx, simulator, user, redis, keys, caplog):
    task = user.add_task()
    user.comment(task, "Done", as_result=True)
    sync(ctx, task)
    # A result we saw earlier, far down a long list: past the pages we read this time.
    redis.hset(keys.results(ctx.portal, task), "1", StoredResult(1, 1, "0" * 16).to_json())
    before = len(simulator.control.calls()["calls"])
    outcome = sync(tampered(ctx, pages_for_ever), task)
    pages = [c for c in simulator.control.calls()["calls"][before:] if c["method"] == "tasks.task.result.list"]
    assert len(pages) == MAX_RESULT_PAGES - 1  # the first page came in the batch
    assert "event=sync.result_list_truncated" in caplog.text
    assert outcome.status == "synced" and outcome.diff is not None
    assert outcome.diff.changes == ()  # not "removed": unknown, as far as this read goes
    assert redis.hexists(keys.results(ctx.portal, task), "1")


def test_a_result_closed_while_the_task_was_out_of_reach_is_told_as_closed(ctx, simulator, user):
    task = user.add_task()
    user.comment(task, "Done", as_result=True)
    assert [c.kind for c in sync(ctx, task).diff.changes] == [ChangeKind.NEW]
    # Access denied for a while (the webhook user left the task, a rights change): error "0".
    simulator.control.add_faults({"method": "tasks.task.result.list", "task_id": task, "error": "0", "count": 1})
    assert sync(ctx, task).status == "dropped"
    user.complete(task)  # meanwhile the task is completed, which closes its result
    back = sync(ctx, task)
    assert [c.kind for c in back.diff.changes] == [ChangeKind.CLOSED]
    assert back.queued == 2  # a new alert (chat, e-mail), not the old NEW one deduplicated away


def drop_answer_of(task_id: int):
    """A batch answer that lacks one of its calls altogether (neither result nor error)."""

    def edit(method: str, payload: dict[str, Any]) -> dict[str, Any]:
        if method == "batch":
            batch_answers(payload).pop(f"r{task_id}", None)
        return payload

    return edit


def test_a_task_missing_from_a_batch_answer_is_retried(ctx, user, redis, keys):
    # Refutes a suspicion of issue 7: such a task is neither lost nor taken for malformed.
    fine, missing = user.add_task("Fine"), user.add_task("Missing")
    outcomes = {o.task_id: o for o in TaskSync(tampered(ctx, drop_answer_of(missing))).run_many(
        claim_all(ctx, [fine, missing]))}
    assert outcomes[fine].status == "synced"
    assert outcomes[missing].status == "retry" and outcomes[missing].detail == "ERROR_UNEXPECTED_ANSWER"
    due_at = redis.zscore(keys.due("tasks"), task_member(ctx.portal, missing))
    assert due_at is not None and due_at > ctx.clock()
