"""Many due tasks in one job: one `batch` request per 50 result lists, one bad task never fails
the others, and each error class gets its policy."""

from __future__ import annotations

from b24notify.dueset import Claim
from b24notify.keys import task_member
from b24notify.workers.context import WorkerContext
from b24notify.workers.sync import TaskSync


def claim_all(ctx: WorkerContext, task_ids: list[int]) -> list[Claim]:
    for task_id in task_ids:
        ctx.tasks.schedule(task_member(ctx.portal, task_id), at=0)
    return ctx.tasks.claim(len(task_ids), 60)


def batch_requests(simulator) -> list[dict]:
    return [c for c in simulator.control.calls()["calls"] if c["method"] == "batch"]


def test_sixty_tasks_cost_two_batch_requests_and_one_for_details(ctx, simulator, user):
    tasks = [user.add_task(f"Task {i}") for i in range(60)]
    for task_id in tasks[:3]:
        user.comment(task_id, "Done", as_result=True)
    before = len(simulator.control.calls()["calls"])
    outcomes = TaskSync(ctx).run_many(claim_all(ctx, tasks))
    assert [o.status for o in outcomes] == ["synced"] * 60
    assert sum(len(o.alerts) for o in outcomes) == 3
    calls = simulator.control.calls()["calls"][before:]
    assert [c["method"] for c in calls] == ["batch", "batch", "batch"]  # 50 + 10 lists, then details
    result_lists = sum(1 for c in calls[:2] for s in c["sub_calls"] if s["method"] == "tasks.task.result.list")
    assert result_lists == 60
    detail_methods = sorted({s["method"] for s in calls[2]["sub_calls"]})
    assert detail_methods == ["tasks.task.get", "user.get"]


def test_a_mix_of_good_missing_and_failing_tasks(ctx, simulator, user, redis, keys):
    good, gone, flaky = user.add_task("Good"), user.add_task("Gone"), user.add_task("Flaky")
    user.comment(good, "Done", as_result=True)
    user.delete(gone)
    simulator.control.add_faults({"method": "tasks.task.result.list", "task_id": flaky,
                                  "error": "INTERNAL_SERVER_ERROR", "count": 1})
    outcomes = {o.task_id: o for o in TaskSync(ctx).run_many(claim_all(ctx, [good, gone, flaky]))}
    assert outcomes[good].status == "synced" and len(outcomes[good].alerts) == 1
    assert outcomes[gone].status == "dropped"
    assert outcomes[flaky].status == "retry" and outcomes[flaky].detail == "INTERNAL_SERVER_ERROR"
    assert redis.zscore(keys.due("tasks"), task_member(ctx.portal, flaky)) is not None  # rescheduled


def test_rejected_request_is_logged_and_not_retried(ctx, simulator, user, caplog):
    task = user.add_task()
    simulator.control.add_faults({"method": "tasks.task.result.list", "error": "100", "count": 1})
    (outcome,) = TaskSync(ctx).run_many(claim_all(ctx, [task]))
    assert outcome.status == "rejected"
    assert ctx.tasks.counts() == {"due": 0, "leased": 0, "pending": 0}
    assert "event=sync.rejected" in caplog.text and "params=taskId:int" in caplog.text


def test_rate_limited_portal_reschedules_every_task_of_the_batch(ctx, simulator, user):
    tasks = [user.add_task() for _ in range(3)]
    simulator.control.add_faults({"method": "batch", "error": "QUERY_LIMIT_EXCEEDED", "count": 10})
    outcomes = TaskSync(ctx).run_many(claim_all(ctx, tasks))
    assert {o.status for o in outcomes} == {"retry"}
    assert ctx.tasks.counts()["due"] == 3


def test_operation_time_limit_pauses_the_method_and_reschedules(ctx, simulator, user):
    task = user.add_task()
    simulator.control.add_faults({"method": "tasks.task.result.list", "error": "OPERATION_TIME_LIMIT",
                                  "count": 1})
    (outcome,) = TaskSync(ctx).run_many(claim_all(ctx, [task]))
    assert outcome.status == "retry" and outcome.detail == "OPERATION_TIME_LIMIT"
    calls = len(simulator.control.calls()["calls"])
    (again,) = TaskSync(ctx).run_many(claim_all(ctx, [task]))
    assert again.status == "retry"  # paused: no request went out
    assert len(simulator.control.calls()["calls"]) == calls


def test_chat_messages_due_together_go_in_one_batch_and_fail_one_by_one(ctx, simulator, user):
    from b24notify.workers.deliver import deliver_many

    tasks = [user.add_task(f"Task {i}") for i in range(3)]
    for task_id in tasks:
        user.comment(task_id, "Done", as_result=True)
    TaskSync(ctx).run_many(claim_all(ctx, tasks))
    simulator.control.add_faults({"method": "im.message.add", "error": "ACCESS_ERROR", "status": 400, "count": 1})
    before = len(simulator.control.calls()["calls"])
    claims = ctx.deliveries.claim(50, 60)
    chat_claims = [c for c in claims if "|chat:" in c.member]
    outcomes = deliver_many(ctx, chat_claims)
    assert sorted(o.status for o in outcomes) == ["dead", "sent", "sent"]
    calls = simulator.control.calls()["calls"][before:]
    assert [c["method"] for c in calls] == ["batch"]
    assert len(simulator.control.messages()) == 2


def test_a_small_sync_carries_its_task_details_and_a_new_result_costs_two_requests(ctx, simulator, user):
    task = user.add_task("Small")
    TaskSync(ctx).run_many(claim_all(ctx, [task]))  # first sight; its details are now cached
    ctx.redis.delete(ctx.keys.task_cache(ctx.portal, task))  # ... and expired again
    user.comment(task, "Done", as_result=True)
    TaskSync(ctx).run_many(claim_all(ctx, [task]))  # the first alert: the author's name is cached now
    user.comment(task, "Also done", as_result=True)
    ctx.redis.delete(ctx.keys.task_cache(ctx.portal, task))
    before = len(simulator.control.calls()["calls"])
    (outcome,) = TaskSync(ctx).run_many(claim_all(ctx, [task]))
    assert len(outcome.alerts) == 1
    calls = simulator.control.calls()["calls"][before:]
    # The result list and the task's details in one request: no second round trip for details
    # (the author's name is cached from the first alert).
    assert [c["method"] for c in calls] == ["batch"]
    assert sorted(s["method"] for s in calls[0]["sub_calls"]) == ["tasks.task.get", "tasks.task.result.list"]
