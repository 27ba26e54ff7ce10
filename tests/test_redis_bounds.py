"""Redis stays bounded over months: every key has an owner that removes it or a TTL.

The year test drives the real code paths (sync and delivery jobs, reconciliation polls, the
upkeep, the web's uninstall) against the simulator and real Redis, with time driven by an
injected clock: a simulated year of thousands of tasks runs in seconds. Redis expires keys by its
own clock, so ``RedisTime`` expires them on the simulated one (a key's TTL counted from the
simulated moment it was written)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from starlette.testclient import TestClient

from b24notify.devtools.simulator import OAuthAuthority, RunningSimulator, SimulatorConfig
from b24notify.keys import task_member
from b24notify.phpform import encode_php_query
from b24notify.service.app import create_app
from b24notify.settings.rates import RateLimit
from b24notify.state_epoch import EXPIRY_SLACK_SECONDS
from b24notify.trace import TRACE_MAXLEN, TRIM_SLACK
from b24notify.workers.context import WorkerContext, WorkerContexts, bind_contexts, build_context, unbind_contexts
from b24notify.workers.jobs import run_deliveries, run_sync
from b24notify.workers.reconcile import Reconciler, Watch, WatchPolicy
from tests.support.apps import install_directly
from tests.support.clock import Clock
from tests.support.pipeline import deliver_all, sync
from tests.support.portal_user import PortalUser
from tests.support.servers import wait_for

DAY = 86400.0
CLIENT_ID, CLIENT_SECRET = "app.sim.1", "sim-app-secret"
FORM = {"content-type": "application/x-www-form-urlencoded"}


class RedisTime:
    """Expire keys on the simulated clock. A key's deadline that changed since the last look was
    (re)written during the last simulated step: it expires its TTL after the simulated now."""

    def __init__(self, redis: Redis, prefix: str, clock: Clock) -> None:
        self.redis = redis
        self.prefix = prefix
        self.clock = clock
        self.deadlines: dict[bytes, tuple[int, float]] = {}  # key -> (Redis's deadline in ms, ours)

    def advance(self) -> None:
        keys = list(self.redis.scan_iter(match=f"{self.prefix}:*", count=1000))
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("PEXPIRETIME", key)
        real_now_ms = time.time() * 1000
        expired = []
        for key, deadline in zip(keys, pipe.execute(), strict=True):
            if deadline < 0:
                self.deadlines.pop(key, None)
                continue
            seen = self.deadlines.get(key)
            if seen is None or seen[0] != deadline:
                seen = (deadline, self.clock.now + (deadline - real_now_ms) / 1000)
                self.deadlines[key] = seen
            if seen[1] <= self.clock.now:
                expired.append(key)
                del self.deadlines[key]
        for start in range(0, len(expired), 500):
            self.redis.delete(*expired[start:start + 500])


def key_census(redis: Redis, prefix: str, but: str = "") -> tuple[int, int, list[str]]:
    """(keys, bytes, keys without a TTL) under the prefix, leaving out the keys starting with ``but``."""
    keys = [k for k in redis.scan_iter(match=f"{prefix}:*", count=1000) if not (but and k.decode().startswith(but))]
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key)
        pipe.ttl(key)
    answers = pipe.execute()
    memory = sum(int(m or 0) for m in answers[0::2])
    persistent = sorted(k.decode() for k, ttl in zip(keys, answers[1::2], strict=True) if ttl == -1)
    return len(keys), memory, persistent


class Portal:
    """One simulated portal and the person working in it, in batches (one request a step)."""

    def __init__(self, sim: RunningSimulator) -> None:
        self.sim = sim
        self.user = PortalUser(sim.webhook_url)
        self.created: dict[int, list[int]] = {}  # day -> task ids

    def step(self, day: int, *, add: int, pin: Sequence[int] = (), complete: Sequence[int] = (),
             delete: Sequence[int] = ()) -> list[int]:
        cmd: dict[str, str] = {}
        for i in range(add):
            cmd[f"a{i}"] = "tasks.task.add?" + encode_php_query(
                {"fields": {"TITLE": f"Day {day} task {i}", "RESPONSIBLE_ID": 503, "CREATED_BY": 1}})
        for n, task in enumerate(pin):
            cmd[f"p{n}"] = "task.commentitem.add?" + encode_php_query(
                {"TASKID": task, "FIELDS": {"POST_MESSAGE": f"Result {day}", "AUTHOR_ID": 503, "AS_RESULT": "Y"}})
        for task in complete:
            cmd[f"c{task}"] = "tasks.task.complete?" + encode_php_query({"taskId": task})
        for task in delete:
            cmd[f"d{task}"] = "tasks.task.delete?" + encode_php_query({"taskId": task})
        if not cmd:
            return []
        answer = self.user.call("batch", {"halt": 0, "cmd": cmd})["result"]
        new = [int(answer[f"a{i}"]["task"]["id"]) for i in range(add)]
        self.created[day] = new
        return new

    def tasks_of(self, day: int) -> list[int]:
        return self.created.get(day, [])

    def close(self) -> None:
        self.user.close()


def app_event(name: str, sim: RunningSimulator, task: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"FIELDS_BEFORE": {"ID": task}, "FIELDS_AFTER": "undefined"} if task else {}
    return {"event": name, "data": data, "ts": "1466439714",
            "auth": {"domain": sim.domain, "member_id": sim.config.member_id, "application_token": "app-token"}}


def schedule(ctx: WorkerContext, tasks: Sequence[int]) -> None:
    for task in tasks:
        ctx.tasks.schedule(task_member(ctx.portal, task), at=ctx.clock())


def run_due(contexts: WorkerContexts) -> None:
    """What the dispatcher and the jobs do: claim what is due and run it (sync, then send)."""
    token = bind_contexts(contexts)
    try:
        while claims := contexts.tasks.claim(50, 60):
            run_sync([[c.member, c.token] for c in claims])
        while claims := contexts.deliveries.claim(50, 60):  # deliveries retried after a failure
            run_deliveries([[c.member, c.token] for c in claims])
    finally:
        unbind_contexts(token)


def poll(contexts: WorkerContexts) -> None:
    for ctx in contexts.all():
        assert ctx.reconciler is not None
        ctx.reconciler.poll_watched()


def with_clock(ctx: WorkerContext, clock: Clock) -> WorkerContext:
    ctx.clock = clock
    ctx.watch.clock = clock
    assert ctx.reconciler is not None
    ctx.reconciler.budget.try_take = lambda: 0.0  # type: ignore[method-assign]  # budgets run on real time
    return ctx


@pytest.fixture
def authority() -> OAuthAuthority:
    return OAuthAuthority(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


@pytest.fixture
def app_portal(authority) -> Iterator[RunningSimulator]:
    with RunningSimulator(SimulatorConfig(bucket_capacity=0, member_id="member-b"), authority=authority) as sim:
        yield sim


def test_a_year_of_tasks_and_an_app_installed_and_uninstalled_leave_redis_bounded(
        make_settings, simulator, app_portal, authority, redis, keys, key_prefix):
    settings = make_settings(
        b24_webhook_url=simulator.webhook_url, b24_application_token=simulator.config.application_token,
        notify_chat="chat42", b24_client_id=CLIENT_ID, b24_client_secret=CLIENT_SECRET,
        b24_oauth_url=app_portal.oauth_url, b24notify_delivery_retry_seconds="10",
        # A year in seconds: the REST budget runs on real time. Polls every 9 days, past the 7-day
        # idle window: a watched task's next poll finds it idle and drops it from the watch set
        # (what is measured is what stays in Redis, not how often a task is read).
        b24_rate_limit="1000/100000", b24notify_watch_hot_seconds=9 * DAY, b24notify_watch_warm_seconds=9 * DAY,
        b24notify_watch_cold_seconds=9 * DAY)
    clock = Clock(time.time())
    contexts = WorkerContexts(settings, redis, serving=True)
    contexts.tasks.clock = contexts.deliveries.clock = clock
    contexts.upkeep.wall = clock
    redis_time = RedisTime(redis, key_prefix, clock)
    a, b = Portal(simulator), Portal(app_portal)
    ctx_a = with_clock(contexts.get(settings.portal), clock)  # type: ignore[arg-type]
    contexts.state.verify()  # the worker's first tick: the state's epoch, connected_at
    samples: dict[int, tuple[int, int]] = {}
    traced = 0
    app_keys_after_uninstall: list[str] = []
    try:
        with TestClient(create_app(settings)) as web:
            for day in range(1, 366):
                clock.now += DAY
                old = a.tasks_of(day - 4)
                # New tasks; yesterday's get a result and are completed; two of nine days ago get a
                # late result; one of four days ago is deleted (its event is lost: nobody reads it
                # again, its state must go by itself).
                a.step(day, add=6, pin=a.tasks_of(day - 1) + a.tasks_of(day - 9)[2:4], complete=a.tasks_of(day - 1),
                       delete=old[:1])
                schedule(ctx_a, a.tasks_of(day) + a.tasks_of(day - 1) + a.tasks_of(day - 9)[2:4])
                if day % 7 == 0:  # one deletion a week comes with its event; the others are found by polls
                    assert web.post("/webhooks/bitrix24", headers=FORM, content=encode_php_query({
                        "event": "ONTASKDELETE", "event_handler_id": "1", "ts": "1466439714",
                        "data": {"FIELDS_BEFORE": {"ID": old[0]}, "FIELDS_AFTER": "undefined"},
                        "auth": {"domain": simulator.domain, "application_token": simulator.config.application_token,
                                 "member_id": simulator.config.member_id},
                    })).json()["status"] == "accepted"
                    simulator.control.add_faults({"method": "im.message.add", "error": "ACCESS_ERROR", "count": 1})
                if day == 100:
                    install_directly(redis, keys, app_portal, authority)
                if 100 <= day < 250:
                    ctx_b = with_clock(contexts.get(app_portal.domain), clock)  # type: ignore[arg-type]
                    b.step(day, add=2, pin=b.tasks_of(day - 1))
                    schedule(ctx_b, b.tasks_of(day) + b.tasks_of(day - 1))
                if day == 250:
                    answer = web.post("/webhooks/bitrix24", headers=FORM,
                                      content=encode_php_query(app_event("ONAPPUNINSTALL", app_portal)))
                    assert answer.json()["status"] == "uninstalled"
                run_due(contexts)
                poll(contexts)
                run_due(contexts)
                contexts.upkeep.run()
                if day == 251:
                    app_keys_after_uninstall = [k for k in key_census(redis, key_prefix)[2] if app_portal.domain in k]
                if day % 7 == 0:
                    redis_time.advance()
                    samples[day] = key_census(redis, key_prefix, but=keys.trace_prefix())[:2]
                    traced = max(traced, redis.xlen(keys.trace(settings.portal)))
            for day in range(366, 366 + 60):  # two quiet months: nothing happens in the portal
                clock.now += DAY
                poll(contexts)
                run_due(contexts)
                contexts.upkeep.run()
                if day % 7 == 0:
                    redis_time.advance()
            redis_time.advance()
    finally:
        a.close()
        b.close()
        contexts.close()

    assert len(a.created) == 365 and sum(len(t) for t in a.created.values()) == 2190
    assert app_keys_after_uninstall == []  # the app's portal: nothing of it kept for good
    assert not any(app_portal.domain in f.decode() for f in redis.hkeys(keys.metrics()))
    # Steady state: the last quarter holds no more than the second (the app was installed then).
    # The portal's trace is left out: it grows all year towards its own cap (trace.py), which
    # holds. Sent delivery records are small (~270 B) since they drop their notice, so the
    # trace's growth alone would outweigh the app's share of the second quarter.
    assert 0 < traced <= TRACE_MAXLEN + TRIM_SLACK
    second = max(samples[d] for d in samples if 91 <= d <= 182)
    last = max(samples[d] for d in samples if 274 <= d <= 365)
    print(f"\nyear: second quarter peak {second[0]} keys {second[1] // 1024} KiB; "
          f"last quarter peak {last[0]} keys {last[1] // 1024} KiB")
    assert last[0] <= second[0] * 1.1 and last[1] <= second[1] * 1.1, (second, last)
    assert last[0] < 1500 and last[1] < 2 * 1024 * 1024
    # After the quiet months only a handful of keys stay for good, whatever a year brought.
    count, memory, persistent = key_census(redis, key_prefix)
    print(f"after two quiet months: {count} keys, {memory} bytes: {persistent}")
    assert count == len(persistent) and count <= 10, persistent
    assert memory < 64 * 1024


def test_a_task_gone_idle_leaves_no_watch_entry_behind(redis, keys, ctx):
    clock = Clock(1_000_000.0)
    watch = Watch(redis, keys, "p", WatchPolicy(idle_age=7 * DAY), clock=clock)
    reconciler = Reconciler(redis, keys, ctx.client, ctx.tasks, watch, portal_limit=RateLimit(2, 50), share=0.2)
    reconciler.budget.try_take = lambda: 0.0  # type: ignore[method-assign]
    watch.record_seen({1: "2|2024-01-01T10:00:00+00:00"})  # the discovery sweep listed it
    watch.touch([1], active=True, synced_at=clock.now)  # a sync read it
    clock.now += 8 * DAY
    reconciler.poll_watched()
    assert redis.exists(watch.next_key, watch.active_key, watch.status_key, watch.synced_key) == 0


def test_an_uninstalled_portal_leaves_nothing_for_good(make_settings, app_portal, authority, redis, keys, key_prefix):
    settings = make_settings(b24_client_id=CLIENT_ID, b24_client_secret=CLIENT_SECRET,
                             b24_oauth_url=app_portal.oauth_url, notify_chat="chat9")
    install_directly(redis, keys, app_portal, authority)
    portal = Portal(app_portal)
    contexts = WorkerContexts(settings, redis, serving=True)
    after = WorkerContexts(settings, redis, serving=True)  # a worker that learns of the uninstall
    try:
        ctx = contexts.get(app_portal.domain)
        assert ctx is not None
        contexts.state.verify()
        tasks = portal.step(1, add=5)
        schedule(ctx, tasks)
        run_due(contexts)
        portal.step(2, add=0, pin=tasks)
        schedule(ctx, tasks)
        run_due(contexts)
        assert redis.exists(keys.results(app_portal.domain, tasks[0]), keys.watch_next(app_portal.domain)) == 2
        with TestClient(create_app(settings)) as web:
            # A deletion that arrives just before the uninstall: its run finds the portal gone.
            assert web.post("/webhooks/bitrix24", headers=FORM, content=encode_php_query(
                app_event("ONTASKDELETE", app_portal, tasks[0]))).json()["status"] == "accepted"
            assert web.post("/webhooks/bitrix24", headers=FORM, content=encode_php_query(
                app_event("ONAPPUNINSTALL", app_portal))).json()["status"] == "uninstalled"
        member = task_member(app_portal.domain, tasks[0])
        wait_for(lambda: (redis.zscore(after.tasks.k.due, member) or 1e18) <= time.time(), 5, "the deletion is due")
        run_due(after)
        after.upkeep.wall = lambda: time.time() + 301  # after the uninstall's grace period
        after.upkeep.run()
    finally:
        portal.close()
        contexts.close()
        after.close()
    _, _, persistent = key_census(redis, key_prefix)
    assert [k for k in persistent if app_portal.domain in k] == []
    assert redis.smembers(keys.drop()) == set()
    assert not any(app_portal.domain in f.decode() for f in redis.hkeys(keys.metrics()))
    assert redis.exists(keys.removed_portals()) == 0


def test_a_task_back_after_its_results_expired_tells_no_old_result(make_settings, simulator, user, redis, keys):
    keep = 3.0
    settings = make_settings(b24_webhook_url=simulator.webhook_url,
                             b24_application_token=simulator.config.application_token, notify_chat="chat42",
                             b24notify_results_keep_days=keep / DAY)
    redis.set(keys.connected_at(settings.portal), (datetime.now(UTC) - timedelta(hours=1)).isoformat())
    ctx = build_context(settings, redis)
    try:
        task = user.add_task()
        sync(ctx, task)
        first = user.comment(task, "Signed", as_result=True)
        sync(ctx, task)
        assert deliver_all(ctx) == ["sent"]
        assert 0 < redis.ttl(keys.results(ctx.portal, task)) <= keep + EXPIRY_SLACK_SECONDS
        # The task goes quiet for longer than results are kept (and sent deliveries remembered).
        for key in [keys.results(ctx.portal, task), *redis.scan_iter(match=f"{keys.delivery_prefix()}*")]:
            redis.delete(key)
        pinned_at = time.time()
        wait_for(lambda: time.time() > pinned_at + keep + 1, keep + 3, "the keep window")
        user.comment(task, "Paid", as_result=True)
        outcome = sync(ctx, task)
        assert [c.kind.value for c in outcome.diff.changes] == ["new"]
        assert len(outcome.diff.baseline) == 1 and first
        assert deliver_all(ctx) == ["sent"]
    finally:
        ctx.close()


def test_active_tasks_cost_redis_a_bounded_amount_each(make_settings, simulator, sink, redis, keys, key_prefix):
    """The figure docs/guarantees.md gives per 1,000 active tasks, measured on 250 (linear: every
    per-task structure is one hash or one member per task, alert or delivery)."""
    settings = make_settings(b24_webhook_url=simulator.webhook_url,
                             b24_application_token=simulator.config.application_token, notify_chat="chat42",
                             notify_email="team@example.com", smtp_url=sink.url, email_from="b24notify@example.com",
                             b24_rate_limit="1000/100000")
    contexts = WorkerContexts(settings, redis, serving=True)
    portal = Portal(simulator)
    try:
        ctx = contexts.get(settings.portal)
        assert ctx is not None
        contexts.state.verify()
        tasks = [t for step in range(5) for t in portal.step(step, add=50)]
        schedule(ctx, tasks)
        run_due(contexts)
        empty = key_census(redis, key_prefix)
        for start in range(0, len(tasks), 25):  # two results on each task: 25 tasks a batch request
            portal.step(100, add=0, pin=tasks[start:start + 25] * 2)
        schedule(ctx, tasks)
        run_due(contexts)
        count, memory, persistent = key_census(redis, key_prefix)
    finally:
        portal.close()
        contexts.close()
    per_task_keys, per_task_bytes = count / len(tasks), memory / len(tasks)
    print(f"\nper active task: {per_task_keys:.2f} keys, {per_task_bytes:.0f} bytes "
          f"(no results yet: {empty[0] / len(tasks):.2f} keys, {empty[1] / len(tasks):.0f} bytes); "
          f"1,000 tasks: {per_task_keys * 1000:.0f} keys, {per_task_bytes * 1000 / 1024 / 1024:.1f} MiB; "
          f"{len(persistent)} keys without a TTL")
    assert len(sink.messages) == 250  # two results on each of 250 tasks, found by one sync: one mail each
    # Two results alerted on each task, chat and mail: under 7 keys and 8 KiB a task.
    assert per_task_keys < 7 and per_task_bytes < 8 * 1024
    assert len(persistent) < 20  # per-task state always expires; only a few fixed keys do not
