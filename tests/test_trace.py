"""The trace (b24notify/trace.py): every step of a task, recorded by the real web app, sync,
delivery and replay against the simulator, the SMTP sink and real Redis; read back by the
``b24notify trace`` command; never a secret; and a hard memory bound per portal."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from starlette.testclient import TestClient

from b24notify import trace as trace_module
from b24notify.channels.notify import notification_tag
from b24notify.cli import main
from b24notify.deadletter import DeadLetters
from b24notify.devtools.simulator import RunningSimulator
from b24notify.dueset import TRIGGER_TTL_SECONDS, DueSetKeys
from b24notify.keys import DELIVERIES, TASKS, Keys, task_member
from b24notify.phpform import encode_php_query
from b24notify.render.email import message_id
from b24notify.scripts import SCHEDULE
from b24notify.service.app import create_app
from b24notify.trace import (
    TRACE_MAXLEN,
    TRACE_TTL_SECONDS,
    TRIM_SLACK,
    AsyncTraceReader,
    Step,
    TraceEntry,
    TraceLog,
    add_steps,
    delivery_step,
    format_timeline,
    sync_step,
)
from b24notify.workers.context import WorkerContext, build_context
from b24notify.workers.deliver import deliver
from b24notify.workers.manual import sync_now
from b24notify.workers.sync import TaskSync
from tests.support.pipeline import deliver_all, sync

FORM = {"content-type": "application/x-www-form-urlencoded"}
SMTP_PASSWORD = "Sm7p-pa55-w0rd"
BYTES_PER_ENTRY = 200  # the stated bound for one step (measured: about 130 on the mix below)


def event(sim: RunningSimulator, task: int, name: str = "ONTASKUPDATE") -> bytes:
    data = ({"FIELDS_BEFORE": "undefined", "FIELDS_AFTER": {"ID": 555, "TASK_ID": task}} if "COMMENT" in name
            else {"FIELDS_BEFORE": {"ID": task}, "FIELDS_AFTER": {"ID": task}})
    payload = {"event": name, "event_handler_id": "1", "ts": "1466439714", "data": data,
               "auth": {"domain": sim.domain, "application_token": sim.config.application_token}}
    return encode_php_query(payload).encode()


@pytest.fixture
def web(settings, redis) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def log(redis: Redis, keys: Keys) -> TraceLog:
    return TraceLog(redis, keys)


def oldest_first(log: TraceLog, portal: str, task: int) -> list[TraceEntry]:
    return list(reversed(log.timeline(portal, task)))


def of_kind(entries: list[TraceEntry], kind: str) -> list[dict[str, str]]:
    return [e.fields for e in entries if e.kind == kind]


def connected(settings, redis: Redis) -> WorkerContext:
    """A context whose portal was connected an hour ago (as the ``ctx`` fixture's)."""
    redis.set(f"{settings.b24notify_key_prefix}:portal:{settings.portal}:connected_at",
              (datetime.now(UTC) - timedelta(hours=1)).isoformat())
    return build_context(settings, redis)


def run_due_sync(ctx: WorkerContext, task: int):
    (claim,) = ctx.tasks.claim(1, 60, only=task_member(ctx.portal, task))
    return TaskSync(ctx).run(claim)


def test_an_event_is_a_step_and_a_duplicate_says_it_folded(web, settings, simulator, redis, keys, log):
    for _ in range(2):
        assert web.post("/webhooks/bitrix24", content=event(simulator, 77), headers=FORM).status_code == 200
    web.post("/webhooks/bitrix24", content=event(simulator, 78, "ONTASKCOMMENTADD"), headers=FORM)
    steps = oldest_first(log, settings.portal, 77)
    assert [(s.kind, s.fields) for s in steps] == [
        ("event", {"event": "ONTASKUPDATE", "coalesced": "0"}),
        ("event", {"event": "ONTASKUPDATE", "coalesced": "1"}),
    ]
    assert [s.fields["event"] for s in log.timeline(settings.portal, 78)] == ["ONTASKCOMMENTADD"]
    assert 0 < redis.ttl(keys.trace(settings.portal)) <= TRACE_TTL_SECONDS
    # The trigger waits for the run's sync step.
    member = task_member(settings.portal, 77)
    assert redis.hget(keys.trigger(TASKS), member) == b"event"
    assert 0 < redis.ttl(keys.trigger(TASKS)) <= TRIGGER_TTL_SECONDS


def test_a_sync_records_its_trigger_requests_outcome_and_the_diff_ids(web, ctx, settings, simulator, user, log):
    portal = settings.portal
    task = user.add_task("Sign the contract")
    sync(ctx, task)  # first sight, no results: a poll that found nothing writes no step
    assert log.timeline(portal, task) == []
    user.comment(task, "Signed", as_result=True)
    web.post("/webhooks/bitrix24", content=event(simulator, task, "ONTASKCOMMENTADD"), headers=FORM)
    outcome = run_due_sync(ctx, task)
    (first,) = [c.result_id for c in outcome.diff.changes]
    (synced,) = of_kind(oldest_first(log, portal, task), "sync")
    assert synced["trigger"] == "event" and synced["outcome"] == "synced"
    assert synced["new"] == str(first) and synced["queued"] == "2" and synced["job"] == "1"
    assert 1 <= int(synced["requests"]) <= 4  # the result list, the task's details, its people

    user.complete(task)  # closes the result: found by a poll (no event), so it is recorded
    sync(ctx, task)
    assert sync(ctx, task).diff.is_empty  # and a quiet poll again is not
    steps = of_kind(oldest_first(log, portal, task), "sync")
    assert [(s["trigger"], s.get("closed")) for s in steps] == [("event", None), ("poll", str(first))]

    assert sync_now(settings, task, send=False) == 0  # `sync --task`: a scheduled step, its sync
    manual = oldest_first(log, portal, task)[-2:]
    assert [(m.kind, m.fields.get("trigger")) for m in manual] == [("scheduled", "manual"), ("sync", "manual")]
    assert "no changes" in format_timeline(manual)[1]


def test_a_retried_sync_keeps_its_trigger(ctx, settings, simulator, user, redis, keys, log):
    task = user.add_task()
    user.comment(task, "Done", as_result=True)
    ctx.tasks.schedule(task_member(ctx.portal, task), at=0, trigger="sweep")
    simulator.control.add_faults({"method": "batch", "error": "INTERNAL_SERVER_ERROR", "status": 500, "count": 3})
    assert run_due_sync(ctx, task).status == "retry"
    redis.zadd(keys.due(TASKS), {task_member(ctx.portal, task): 0})  # its backoff is over
    assert run_due_sync(ctx, task).status == "synced"
    steps = oldest_first(log, settings.portal, task)
    assert [(s.kind, s.fields.get("trigger"), s.fields.get("outcome")) for s in steps] == [
        ("scheduled", "sweep", None), ("sync", "sweep", "retry"), ("sync", "sweep", "synced")]
    assert steps[1].fields["detail"] == "INTERNAL_SERVER_ERROR"


def test_deliveries_record_recipient_channel_attempt_outcome_and_message(ctx, settings, simulator, sink, user,
                                                                        redis, keys, log):
    portal = settings.portal
    task = user.add_task()
    sync(ctx, task)
    user.comment(task, "Done", as_result=True)
    (result,) = [c.result_id for c in sync(ctx, task).diff.changes]
    sink.refuse_next(1, code=451)  # a passing refusal: retried
    assert sorted(deliver_all(ctx)) == ["retry", "sent"]
    mail_id = next(m.decode() for m in redis.zrange(keys.due(DELIVERIES), 0, -1))
    redis.zadd(keys.due(DELIVERIES), {mail_id: 0})
    assert deliver_all(ctx) == ["sent"]
    steps = of_kind(oldest_first(log, portal, task), "delivery")
    assert [(s["channel"], s["recipient"], s["attempt"], s["outcome"]) for s in steps] == [
        ("chat", "chat:chat42", "1", "sent"),
        ("email", "email:team@example.com", "1", "retry"),
        ("email", "email:team@example.com", "2", "sent"),
    ]
    assert all(s["results"] == str(result) for s in steps)
    assert "451" in steps[1]["error"] and "error" not in steps[2]
    assert steps[2]["delivery"] == mail_id and steps[2]["message_id"] == message_id(mail_id)
    assert "message_id" not in steps[0]  # a chat message's id is not known

    user.comment(task, "One more", as_result=True)
    (second,) = [c.result_id for c in sync(ctx, task).diff.changes]
    sink.refuse_next(1, code=550)  # mailbox unknown: dead at once
    assert sorted(deliver_all(ctx)) == ["dead", "sent"]
    (dead,) = [s for s in of_kind(oldest_first(log, portal, task), "delivery") if s["outcome"] == "dead"]
    assert dead["results"] == str(second) and "550" in dead["error"] and dead["attempt"] == "1"
    recent = log.recent_deliveries()
    assert recent[0].fields["outcome"] in ("dead", "sent") and len(recent) == 5
    assert [e.id for e in recent] == sorted((e.id for e in recent), key=lambda i: tuple(map(int, i.split("-"))),
                                            reverse=True)


def test_a_personal_notification_names_its_tag(make_settings, simulator, sink, user, redis, keys, log):
    settings = make_settings(
        b24_webhook_url=simulator.webhook_url, b24_application_token=simulator.config.application_token,
        notify_people="responsible", smtp_url=sink.url, email_from="b24notify@example.com")
    context = connected(settings, redis)
    try:
        task = user.add_task()
        sync(context, task)
        user.comment(task, "Done", as_result=True, author=1)
        outcome = sync(context, task)
        assert "sent" in deliver_all(context)
        (step,) = [s for s in of_kind(oldest_first(log, settings.portal, task), "delivery") if s["channel"] == "notify"]
        (notice,) = [n for n in outcome.notices if n.target.channel == "notify"]
        assert step["channel"] == "notify" and step["recipient"] == "notify:u503"
        assert step["message_id"] == notification_tag(notice)
    finally:
        context.close()


def test_a_replay_is_traced_and_the_command_finds_the_task_by_result(ctx, settings, simulator, sink, user, redis,
                                                                     keys, log, monkeypatch, capsys):
    portal = settings.portal
    task = user.add_task()
    sync(ctx, task)
    user.comment(task, "Done", as_result=True)
    (result,) = [c.result_id for c in sync(ctx, task).diff.changes]
    sink.refuse_next(1, code=550)
    assert sorted(deliver_all(ctx)) == ["dead", "sent"]
    (dead,) = DeadLetters(redis, keys).entries()
    assert DeadLetters(redis, keys).replay([dead.id], by="console:admin") == [dead.id]
    assert deliver_all(ctx) == ["sent"]
    replay = [s for s in oldest_first(log, portal, task) if s.kind == "replay"]
    assert [r.fields for r in replay] == [{"delivery": dead.id, "recipient": "email:team@example.com",
                                           "channel": "email", "results": str(result), "by": "console:admin"}]
    assert log.find_result(portal, result) == task
    assert log.find_result(portal, result + 1000) is None

    for name, value in {"REDIS_URL": settings.redis_url, "B24NOTIFY_KEY_PREFIX": settings.b24notify_key_prefix,
                        "B24_WEBHOOK_URL": simulator.webhook_url, "B24_APPLICATION_TOKEN": "t",
                        "NOTIFY_CHAT": "chat42"}.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["trace", "--result", str(result)]) == 0  # the only portal: no --portal needed
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"result {result} is a result of task {task}"
    assert out[1].startswith(f"task {task} on {portal}: ") and out[1].endswith("oldest first")
    body = out[2:]
    assert "new " + str(result) in body[0] and "sync" in body[0]  # oldest first: the sync, then its sends
    assert "replayed by console:admin" in body[-2] and "sent via email" in body[-1]
    assert main(["trace", "--portal", portal.upper(), "--task", str(task)]) == 0
    assert main(["trace", "--portal", "elsewhere.example", "--task", str(task)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"b24notify: trace: unknown portal elsewhere.example; configured portals: {portal}"]
    assert main(["trace", "--task", "999999"]) == 1


def test_no_secret_reaches_the_trace(make_settings, simulator, sink, user, redis, keys):
    """The webhook's code, the application token and the SMTP password appear in no entry, even
    when a send fails on the SMTP login (the error is traced)."""
    settings = make_settings(
        b24_webhook_url=simulator.webhook_url, b24_application_token=simulator.config.application_token,
        notify_chat="chat42", notify_email="team@example.com", email_from="b24notify@example.com",
        smtp_url=f"smtp://alerts:{SMTP_PASSWORD}@127.0.0.1:{sink.port}", b24notify_delivery_retry_seconds="10")
    context = connected(settings, redis)
    try:
        with TestClient(create_app(settings)) as web:
            task = user.add_task()
            user.comment(task, "Done", as_result=True)
            web.post("/webhooks/bitrix24", content=event(simulator, task), headers=FORM)
            run_due_sync(context, task)
            assert sorted(deliver(context, c).status for c in context.deliveries.claim(50, 60)) in (
                ["dead", "sent"], ["retry", "sent"])  # the sink offers no login: the mail fails
    finally:
        context.close()
    entries = redis.xrange(keys.trace(settings.portal))
    assert {e[1][b"kind"] for e in entries} >= {b"event", b"sync", b"delivery"}
    text = b"\n".join(b" ".join([i, *(x for kv in f.items() for x in kv)]) for i, f in entries)
    failed = [f for _, f in entries if f.get(b"channel") == b"email"]
    assert failed and failed[0].get(b"error")  # the error is there, the password is not
    for secret in (simulator.config.webhook_code, simulator.config.application_token, SMTP_PASSWORD):
        assert secret.encode() not in text


def synthetic(rng: random.Random, n: int, portal: str) -> list[Step]:
    """A realistic mix of steps: syncs with a new result now and then, and sends to people."""
    steps: list[Step] = []
    for _ in range(n):
        task, result = rng.randint(1000, 99_999), rng.randint(10_000, 999_999)
        if rng.random() < 0.45:
            steps.append(sync_step(task, trigger=rng.choice(["event", "poll", "sweep"]), requests=rng.randint(1, 4),
                                   job=rng.randint(1, 50), outcome="synced",
                                   changes={"new": [result]} if rng.random() < 0.4 else {}, queued=rng.randint(0, 3)))
        else:
            user_id = rng.randint(1, 900)
            channel, recipient, ref = rng.choice([
                ("chat", "chat:chat42", ""),
                ("notify", f"notify:u{user_id}", f"b24n:{rng.getrandbits(128):032x}"),
                ("email", f"email:u{user_id}", f"<{rng.getrandbits(128):032x}@b24notify>")])
            steps.append(delivery_step(task, delivery=f"{portal}:{task}:{result}:new|{recipient}", recipient=recipient,
                                       channel=channel, attempt=1, outcome="sent", results=[result], message_id=ref))
    return steps


def test_the_memory_bound_holds_with_ten_thousand_steps(redis, keys, monkeypatch):
    """10,000 steps for one portal, half of them events through schedule.lua (the web's path),
    half through the workers' writer, with the cap set to 2,000: the stream keeps about the cap,
    its memory stays under the cap times the stated bound per entry, and it expires. Then 10,000
    steps under the real cap: the bytes per step that make the real bound."""
    cap = 2_000
    portal = "acme.bitrix24.com"
    key = keys.trace(portal)
    due = DueSetKeys.of(keys, TASKS)
    schedule = SCHEDULE.on(redis)
    rng = random.Random(7)
    monkeypatch.setattr(trace_module, "TRACE_MAXLEN", cap)
    for chunk in range(5):
        pipe = redis.pipeline(transaction=False)
        add_steps(pipe, keys, portal, synthetic(rng, 1_000, portal))
        pipe.execute()
        for task in range(chunk * 1_000, chunk * 1_000 + 1_000):
            schedule(due=due.due, lease=due.lease, pending=due.pending, since=due.since, drop=due.since,
                     metrics=due.since, watch_active=due.since, watch_next=due.since, intake_rate=due.since,
                     window=due.window, wake=due.wake, trace=key, triggers=due.trigger,
                     member=task_member(portal, task), at=0, also_drop="0", metrics_field="", now=0,
                     debounce_cap=0, task_id="", first_poll="0", burst_threshold="0",
                     trigger="event", event="ONTASKUPDATE", trace_maxlen=cap, trace_ttl=TRACE_TTL_SECONDS)
        assert redis.xlen(key) <= cap + TRIM_SLACK
    assert redis.xlen(key) >= cap
    assert redis.memory_usage(key, samples=0) <= (cap + TRIM_SLACK) * BYTES_PER_ENTRY
    assert TRACE_TTL_SECONDS - 60 < redis.ttl(key) <= TRACE_TTL_SECONDS

    monkeypatch.setattr(trace_module, "TRACE_MAXLEN", TRACE_MAXLEN)
    redis.delete(key)
    pipe = redis.pipeline(transaction=False)
    add_steps(pipe, keys, portal, synthetic(rng, 10_000, portal))
    pipe.execute()
    per_entry = redis.memory_usage(key, samples=0) / redis.xlen(key)
    assert per_entry <= BYTES_PER_ENTRY
    bound = (TRACE_MAXLEN + TRIM_SLACK) * BYTES_PER_ENTRY
    assert bound <= 4_100_000  # the bound docs state: about 4 MB per portal at most
    print(f"\ntrace: {per_entry:.0f} bytes a step; bound {TRACE_MAXLEN:,} steps = "
          f"{(TRACE_MAXLEN + TRIM_SLACK) * per_entry / 1e6:.1f} MB a portal (stated: {bound / 1e6:.1f} MB)")


def test_reads_scan_at_most_the_capped_stream_and_both_readers_agree(redis, keys, redis_url):
    import asyncio

    from redis.asyncio import Redis as AsyncRedis

    portal = "acme.bitrix24.com"
    pipe = redis.pipeline(transaction=False)
    add_steps(pipe, keys, portal, [sync_step(7, trigger="event", requests=1, job=1, outcome="synced",
                                             changes={"new": [70]})])
    add_steps(pipe, keys, portal, synthetic(random.Random(3), 2_500, portal))
    pipe.execute()
    time.sleep(0.01)  # stream ids order entries across streams by the millisecond only
    add_steps(pipe, keys, "other.bitrix24.com", [delivery_step(9, delivery="d", recipient="chat:c1", channel="chat",
                                                               attempt=1, outcome="sent", results=[90])])
    pipe.execute()
    log = TraceLog(redis, keys)
    assert log.find_result(portal, 70) == 7
    assert TraceLog(redis, keys, scan=2_000).find_result(portal, 70) is None  # older than the scan bound
    assert log.portals() == ["acme.bitrix24.com", "other.bitrix24.com"]
    recent = log.recent_deliveries(limit=3)
    assert recent[0].portal == "other.bitrix24.com" and len(recent) == 3

    async def read() -> tuple[list[TraceEntry], int | None, list[TraceEntry]]:
        client = AsyncRedis.from_url(redis_url)
        try:
            reader = AsyncTraceReader(client, keys)
            return (await reader.timeline(portal, 7), await reader.find_result(portal, 70),
                    await reader.recent_deliveries(limit=3))
        finally:
            await client.aclose()

    timeline, found, deliveries = asyncio.run(read())
    assert timeline == log.timeline(portal, 7) and found == 7 and deliveries == recent
