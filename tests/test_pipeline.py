"""Sync and delivery, in-process, against the simulator over HTTP, a real SMTP sink and real Redis:
what people receive for each kind of change, and that nothing is sent twice."""

from __future__ import annotations

import time

import pytest

from b24notify.devtools.simulator import RunningSimulator
from b24notify.keys import task_member
from b24notify.metrics import decode_counters, total
from b24notify.workers.context import WorkerContext, build_context
from b24notify.workers.deliver import deliver
from b24notify.workers.sync import TaskSync
from tests.support.pipeline import deliver_all, delivery_ids, sync
from tests.support.servers import wait_for


def deliver_once(ctx: WorkerContext) -> list[str]:
    return [deliver(ctx, c).status for c in ctx.deliveries.claim(50, 60)]


def chat_messages(simulator: RunningSimulator) -> list[str]:
    return [m["message"] for m in simulator.control.messages()]


def test_new_result_sends_one_chat_message_and_one_mail(ctx, simulator, sink, user):
    task = user.add_task("Sign the supply contract")
    sync(ctx, task)  # first sight, no results yet
    user.comment(task, "The client signed the [B]documents[/B]", as_result=True)
    outcome = sync(ctx, task)
    assert [c.kind.value for c in outcome.diff.changes] == ["new"]
    assert sorted(deliver_all(ctx)) == ["sent", "sent"]

    (message,) = chat_messages(simulator)
    assert "New result" in message and "Sign the supply contract" in message
    assert f"/company/personal/user/503/tasks/task/view/{task}/" in message
    assert "[b]documents[/b]" in message
    (mail,) = sink.wait_for(1)
    assert mail["Subject"] == f"New result in task #{task}: Sign the supply contract"
    assert mail["To"] == "team@example.com"


def test_closing_the_task_notifies_closed_once(ctx, simulator, sink, user):
    task = user.add_task()
    user.comment(task, "Done", as_result=True)
    sync(ctx, task)
    deliver_all(ctx)
    user.complete(task)
    outcome = sync(ctx, task)
    assert [c.kind.value for c in outcome.diff.changes] == ["closed"]
    deliver_all(ctx)
    assert sync(ctx, task).diff.is_empty  # nothing changed since
    assert deliver_all(ctx) == []
    messages = chat_messages(simulator)
    assert len(messages) == 2 and "Result closed" in messages[1]
    assert len(sink.wait_for(2)) == 2


def test_results_from_before_connection_are_a_silent_baseline(make_settings, settings, redis, simulator, sink,
                                                               user):
    task = user.add_task()
    user.comment(task, "Old result", as_result=True)
    created = int(time.time())
    wait_for(lambda: int(time.time()) > created, 2, "clock")  # the portal stamps results to the second
    context = build_context(settings, redis)  # connects now: the result above predates it
    try:
        outcome = sync(context, task)
        assert outcome.diff.baseline and not outcome.diff.changes
        assert deliver_all(context) == []
        user.comment(task, "Fresh result", as_result=True)
        assert [c.kind.value for c in sync(context, task).diff.changes] == ["new"]
    finally:
        context.close()


def test_pinned_again_comment_is_a_new_result(ctx, simulator, user):
    task = user.add_task()
    comment = user.comment(task, "Ready")
    first = user.pin(comment)
    sync(ctx, task)
    user.complete(task)
    user.renew(task)
    again = user.pin(comment)  # its result is closed, so it may be pinned again
    assert again["id"] != first["id"]
    outcome = sync(ctx, task)
    assert [(c.kind.value, c.result_id) for c in outcome.diff.changes] == [
        ("closed", first["id"]), ("new", again["id"])]


def test_group_task_links_to_the_group_page(ctx, simulator, user):
    task = user.add_task(group=7)
    sync(ctx, task)
    user.comment(task, "Shipped", as_result=True)
    sync(ctx, task)
    deliver_all(ctx)
    assert f"/workgroups/group/7/tasks/task/view/{task}/" in chat_messages(simulator)[0]


def test_rerun_after_a_crash_before_release_sends_nothing_twice(ctx, simulator, sink, user, monkeypatch):
    task = user.add_task()
    sync(ctx, task)
    user.comment(task, "Done", as_result=True)
    member = task_member(ctx.portal, task)

    def die(claim):  # the worker dies right after the outbox commit, before releasing the task
        raise SystemExit("killed")

    with monkeypatch.context() as patch:
        patch.setattr(ctx.tasks, "complete", die)
        with pytest.raises(SystemExit):
            sync(ctx, task)
    ctx.tasks.clock = lambda: 10**10  # the lease runs out; the reaper gives the task back
    assert ctx.tasks.reap() == [member]
    (again,) = ctx.tasks.claim(1, 60)
    assert TaskSync(ctx).run(again).diff.is_empty
    assert sorted(deliver_all(ctx)) == ["sent", "sent"]
    assert deliver_all(ctx) == []
    assert len(chat_messages(simulator)) == 1 and len(sink.wait_for(1)) == 1


def test_a_delivery_already_sent_is_not_sent_again(ctx, simulator, user):
    task = user.add_task()
    sync(ctx, task)
    user.comment(task, "Done", as_result=True)
    outcome = sync(ctx, task)
    deliver_all(ctx)
    [did] = delivery_ids(outcome, "chat")
    ctx.deliveries.schedule(did, at=0)  # a stray duplicate claim of the same delivery
    assert deliver_all(ctx) == ["skipped"]
    assert len(chat_messages(simulator)) == 1


def test_deleted_task_drops_its_state(ctx, simulator, user, redis, keys):
    task = user.add_task()
    user.comment(task, "Done", as_result=True)
    sync(ctx, task)
    assert redis.exists(keys.results(ctx.portal, task))
    user.delete(task)
    outcome = sync(ctx, task)  # the result list answers error "0"
    assert outcome.status == "dropped"
    assert not redis.exists(keys.results(ctx.portal, task))


def test_refused_mail_is_retried_then_dead_lettered_with_the_reason(ctx, simulator, sink, user, redis, keys):
    task = user.add_task()
    sync(ctx, task)
    user.comment(task, "Done", as_result=True)
    sync(ctx, task)
    sink.refuse_next(10, code=451)
    statuses = deliver_all(ctx)
    assert sorted(statuses) == ["retry", "sent"]  # chat went, mail waits 10 s
    ctx.deliveries.clock = lambda: 10**10
    assert deliver_once(ctx) == ["retry"]  # second attempt, schedule 10,60
    assert deliver_once(ctx) == ["dead"]
    (dead,) = redis.zrange(keys.deadletter(), 0, -1)
    record = redis.hgetall(keys.delivery(dead.decode()))
    assert record[b"status"] == b"dead" and b"451" in record[b"last_error"]


def test_permanent_chat_error_goes_to_dead_letter_at_once(make_settings, simulator, sink, redis, user):
    settings = make_settings(
        b24_webhook_url=simulator.webhook_url, b24_application_token="t", notify_chat="chat42",
    )
    context = build_context(settings, redis)
    try:
        simulator.control.add_faults({"method": "im.message.add", "error": "ACCESS_ERROR", "status": 400,
                                      "count": 1})
        task = user.add_task()
        sync(context, task)
        user.comment(task, "Done", as_result=True)
        sync(context, task)
        assert deliver_all(context) == ["dead"]
    finally:
        context.close()


def test_portal_auth_failure_halts_calls_and_says_why(ctx, simulator, user, redis, keys):
    task = user.add_task()
    simulator.control.add_faults({"method": "*", "error": "NO_AUTH_FOUND", "count": 5})
    outcome = sync(ctx, task)
    assert outcome.status == "halted" and "NO_AUTH_FOUND" in outcome.detail
    assert b"NO_AUTH_FOUND" in redis.get(keys.halted(ctx.portal))
    calls_before = len(simulator.control.calls()["calls"])
    assert sync(ctx, task).status == "halted"  # no call while halted: no retry storm
    assert len(simulator.control.calls()["calls"]) == calls_before
    counters = decode_counters(redis.hgetall(keys.metrics()))
    assert total(counters, "b24notify_jobs", outcome="halted") == 1
    assert total(counters, "b24notify_jobs", outcome="paused") == 1


def test_server_errors_reschedule_the_task(ctx, simulator, user):
    task = user.add_task()
    simulator.control.add_faults({"method": "tasks.task.result.list", "error": "INTERNAL_SERVER_ERROR",
                                  "count": 3})
    outcome = sync(ctx, task)
    assert outcome.status == "retry"
    due_at = ctx.tasks.next_due_at()
    assert due_at is not None and due_at > ctx.clock()


def test_doctor_says_what_is_wrong(settings, simulator, redis, keys, capsys):
    from b24notify.doctor import run_doctor

    lines: list[str] = []
    assert run_doctor(settings, lines.append) == 0
    # The test Redis keeps no AOF: doctor warns about that (tests/test_state_loss.py), nothing fails.
    assert all(line.startswith("ok") or line.startswith("warn  redis disk") for line in lines), lines
    redis.set(keys.halted(settings.portal), "tasks.task.result.list NO_AUTH_FOUND (HTTP 401)")
    simulator.control.add_faults({"method": "*", "error": "insufficient_scope", "count": 5})
    lines.clear()
    assert run_doctor(settings, lines.append) == 1
    failed = [line for line in lines if line.startswith("FAIL")]
    assert any("NO_AUTH_FOUND" in line for line in failed)
    assert any("insufficient_scope" in line and "halt_portal" in line for line in failed)


def test_dead_letters_can_be_listed_and_replayed(ctx, simulator, sink, user, redis, keys):
    from b24notify.deadletter import DeadLetters

    task = user.add_task()
    sync(ctx, task)
    user.comment(task, "Done", as_result=True)
    sync(ctx, task)
    sink.refuse_next(1, code=550)  # mailbox unknown: permanent, dead at once
    assert sorted(deliver_all(ctx)) == ["dead", "sent"]
    dead = DeadLetters(redis, keys)
    (entry,) = dead.entries()
    assert entry.channel == "email" and "550" in entry.reason
    assert dead.replay() == [entry.id]  # the operator fixed the mailbox
    assert deliver_all(ctx) == ["sent"]
    assert dead.entries() == []
    assert len(sink.wait_for(1)) == 1


def _chat_delivery_after_a_new_result(ctx, user) -> str:
    task = user.add_task()
    sync(ctx, task)
    user.comment(task, "Done", as_result=True)
    outcome = sync(ctx, task)
    [did] = delivery_ids(outcome, "chat")
    return did


def test_a_worker_that_died_after_posting_does_not_post_again(ctx, simulator, user, redis, keys, monkeypatch):
    did = _chat_delivery_after_a_new_result(ctx, user)
    (claim,) = ctx.deliveries.claim(1, 60, only=did)

    def die(ctx, items):  # the portal stored the message; the worker dies before recording it
        raise SystemExit("killed")

    with monkeypatch.context() as patch:
        patch.setattr("b24notify.workers.deliver._record_sent", die)
        with pytest.raises(SystemExit):
            deliver(ctx, claim)
    assert len(chat_messages(simulator)) == 1
    ctx.deliveries.clock = lambda: 10**10  # its lease runs out; the reaper hands it back
    assert ctx.deliveries.reap() == [did]
    ctx.deliveries.clock = time.time
    ctx.deliveries.schedule(did, at=0)
    (again,) = ctx.deliveries.claim(1, 60, only=did)
    assert deliver(ctx, again).status == "sent"
    assert len(chat_messages(simulator)) == 1  # found in the dialog, not posted twice
    assert len(simulator.control.calls("im.dialog.messages.get")["calls"]) == 1
    assert redis.hget(keys.delivery(did), "status") == b"sent"


def test_an_attempt_that_died_before_posting_posts_after_looking(ctx, simulator, user, redis, keys):
    did = _chat_delivery_after_a_new_result(ctx, user)
    redis.hset(keys.delivery(did), "in_flight", "1")  # it started, and died before the request went out
    (claim,) = ctx.deliveries.claim(1, 60, only=did)
    assert deliver(ctx, claim).status == "sent"
    assert len(chat_messages(simulator)) == 1
    assert len(simulator.control.calls("im.dialog.messages.get")["calls"]) == 1
    assert not redis.hexists(keys.delivery(did), "in_flight")


def test_a_lost_answer_is_retried_by_looking_not_by_posting_again(ctx, simulator, user, redis, keys):
    did = _chat_delivery_after_a_new_result(ctx, user)
    simulator.control.add_faults({"method": "im.message.add", "network": "drop_after", "count": 1})
    (claim,) = ctx.deliveries.claim(1, 60, only=did)
    assert deliver(ctx, claim).status == "retry"  # no answer: the client must not repeat it by itself
    assert len(chat_messages(simulator)) == 1
    assert redis.hexists(keys.delivery(did), "in_flight")
    ctx.deliveries.schedule(did, at=0)
    (again,) = ctx.deliveries.claim(1, 60, only=did)
    assert deliver(ctx, again).status == "sent"
    assert len(chat_messages(simulator)) == 1
    assert len(simulator.control.calls("im.message.add")["calls"]) == 1


def reap_all(ctx: WorkerContext, count: int) -> None:
    reaped: list[str] = []
    wait_for(lambda: bool(reaped.extend(ctx.deliveries.reap())) or len(reaped) == count, 2, "leases reaped")


def test_a_delivery_whose_sends_keep_killing_the_worker_goes_to_the_dead_letter_list(ctx, simulator, sink, user):
    """Each run that never finished is a strike from the reaper; at B24NOTIFY_TASK_MAX_ATTEMPTS the
    delivery is dead-lettered with the reason instead of taking a worker down for ever."""
    task = user.add_task()
    sync(ctx, task)
    user.comment(task, "Poison", as_result=True)
    sync(ctx, task)
    limit = ctx.settings.b24notify_task_max_attempts
    for _ in range(limit):
        claimed = []  # leased, then "the worker died": never released (from two strikes, one a claim)
        while claims := ctx.deliveries.claim(50, 0.05):
            claimed += claims
        assert len(claimed) == 2
        reap_all(ctx, 2)
    statuses = deliver_all(ctx)
    assert statuses == ["dead", "dead"]
    assert chat_messages(simulator) == []
    dead = ctx.redis.zrange(ctx.keys.deadletter(), 0, -1)
    assert len(dead) == 2
    record = ctx.redis.hgetall(ctx.keys.delivery(dead[0].decode()))
    assert b"never finished" in record[b"last_error"]
