"""REST economy: a burst of events through the real fleet against a portal with the standard
leaky bucket (50 deep, draining 2/s), side by side with a naive integration that calls
``tasks.task.result.list`` once per event (what a no-code trigger does).

    .venv/bin/python bench/rest_economy.py [--events 2000] [--tasks 300] [--workers 2]

Reports the REST requests each side used, the 503 QUERY_LIMIT_EXCEEDED answers it got, how many
tasks ended up correctly synced, and the time to drain. Needs Redis at REDIS_URL (default
redis://127.0.0.1:6379/14; own key prefix, deleted afterwards). Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from redis import Redis

from b24notify.devtools.simulator import RunningSimulator, SimulatorConfig
from b24notify.phpform import encode_php_query
from bench._fleet import wait_idle
from bench._servers import drive, free_port, start_process, stop_process, wait_http

FORM = {"content-type": "application/x-www-form-urlencoded"}


def rest(client: httpx.Client, method: str, params: dict) -> object:
    payload = client.post(method, json=params).json()
    if "error" in payload:
        raise RuntimeError(f"{method}: {payload}")
    return payload["result"]


def make_tasks(sim: RunningSimulator, count: int) -> list[int]:
    sim.control.configure(bucket_capacity=0)  # set-up is not what we measure
    with httpx.Client(base_url=sim.webhook_url, timeout=10) as client:
        tasks = [int(rest(client, "tasks.task.add", {"fields": {"TITLE": f"Task {i}", "RESPONSIBLE_ID": 503}})
                     ["task"]["id"]) for i in range(count)]  # type: ignore[index]
    sim.control.wait_events(30)
    return tasks


def pin_results(sim: RunningSimulator, tasks: list[int]) -> None:
    sim.control.configure(bucket_capacity=0)
    with httpx.Client(base_url=sim.webhook_url, timeout=10) as client:
        # Results pinned from the context menu: no event of their own (docs/protocol.md §2).
        for task_id in tasks:
            comment = rest(client, "task.commentitem.add",
                           {"TASKID": task_id, "FIELDS": {"POST_MESSAGE": "Done", "AUTHOR_ID": 503}})
            rest(client, "tasks.task.result.addFromComment", {"commentId": comment})
    return tasks


def event_stream(tasks: list[int], events: int, seed: int = 7) -> list[int]:
    """E events over T tasks: every task at least once, the rest duplicates in bursts."""
    rng = random.Random(seed)
    stream = list(tasks) + [rng.choice(tasks) for _ in range(events - len(tasks))]
    rng.shuffle(stream)
    return stream


def event_body(sim: RunningSimulator, task_id: int) -> bytes:
    return encode_php_query({
        "event": "ONTASKUPDATE", "event_handler_id": "1",
        "data": {"FIELDS_BEFORE": {"ID": task_id}, "FIELDS_AFTER": {"ID": task_id}},
        "ts": str(int(time.time())),
        "auth": {"domain": sim.domain, "client_endpoint": f"http://{sim.domain}/rest/",
                 "member_id": sim.config.member_id, "application_token": sim.config.application_token},
    }).encode()


def request_counts(sim: RunningSimulator, since: int) -> dict[str, int]:
    calls = sim.control.calls()["calls"]
    counts: Counter[str] = Counter()
    for call in calls:
        if call["seq"] <= since:
            continue
        counts["requests"] += 1
        if call["http_status"] == 503:
            counts["503"] += 1
        subs = {s["method"] for s in call.get("sub_calls", [])} or {call["method"]}
        if "tasks.task.result.list" in subs:
            counts["fetch"] += 1
            subs_list = [s for s in call.get("sub_calls", []) if s["method"] == "tasks.task.result.list"]
            counts["task_fetches"] += len(subs_list)
        elif "im.message.add" in subs:
            counts["chat"] += 1
        else:
            counts["other"] += 1
    return counts


def last_seq(sim: RunningSimulator) -> int:
    calls = sim.control.calls()["calls"]
    return int(calls[-1]["seq"]) if calls else 0


def run_fleet(args: argparse.Namespace, redis_url: str) -> dict[str, float]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    port = free_port()
    with RunningSimulator(SimulatorConfig()) as sim:
        tasks = make_tasks(sim, args.tasks)
        env = {"REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": prefix, "B24NOTIFY_QUEUE": f"{prefix}-q",
               "B24_WEBHOOK_URL": sim.webhook_url, "B24_APPLICATION_TOKEN": sim.config.application_token,
               "NOTIFY_CHAT": "chat1", "B24NOTIFY_LOG_LEVEL": "WARNING",
               "B24_RATE_LIMIT": "2/50", "B24_RATE_RESERVE": "0.2", "B24NOTIFY_GATHER_SECONDS": str(args.gather),
               "B24NOTIFY_DEBOUNCE_MAX_SECONDS": str(args.debounce_max),
               # Reconciliation polls (bench/reconcile.py measures them) would come due 30 s after the
               # baseline sync, in the middle of this run: keep them out of the burst's figures.
               "B24NOTIFY_WATCH_HOT_SECONDS": "3600"}
        web = start_process(["-m", "b24notify.cli", "serve", "--port", str(port)], env)
        workers = [start_process(["-m", "b24notify.cli", "worker"], env) for _ in range(args.workers)]
        redis = Redis.from_url(redis_url)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            # Baseline sync of every task (first sight), so the burst measures steady-state work.
            stream = event_stream(tasks, args.events)
            drive(f"http://127.0.0.1:{port}/webhooks/bitrix24", lambda i: event_body(sim, tasks[i]), FORM,
                  len(tasks), 16)
            wait_idle(redis, prefix, 600)
            pin_results(sim, tasks[: args.with_results])
            sim.control.configure(bucket_capacity=50, bucket_drain_per_second=2.0)
            since = last_seq(sim)
            started = time.monotonic()
            drive(f"http://127.0.0.1:{port}/webhooks/bitrix24", lambda i: event_body(sim, stream[i]), FORM,
                  len(stream), 16)
            wait_idle(redis, prefix, 900)
            elapsed = time.monotonic() - started
            counts = request_counts(sim, since)
            synced = _synced_tasks(redis, prefix, sim.domain, tasks)
        finally:
            for proc in [web, *workers]:
                stop_process(proc)
            for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
                redis.delete(key)
        chat_messages = len(sim.control.messages())
    return {"events": len(stream), **counts, "synced": synced, "seconds": elapsed, "messages": chat_messages}


def _synced_tasks(redis: Redis, prefix: str, portal: str, tasks: list[int]) -> int:
    pipe = redis.pipeline(transaction=False)
    for task_id in tasks:
        pipe.exists(f"{prefix}:results:{portal}:{task_id}")
    return sum(pipe.execute())


def run_naive(args: argparse.Namespace) -> dict[str, float]:
    with RunningSimulator(SimulatorConfig()) as sim:
        tasks = make_tasks(sim, args.tasks)
        pin_results(sim, tasks[: args.with_results])
        stream = event_stream(tasks, args.events)
        sim.control.configure(bucket_capacity=50, bucket_drain_per_second=2.0)
        since = last_seq(sim)
        ok: set[int] = set()
        started = time.monotonic()
        with httpx.Client(base_url=sim.webhook_url, timeout=10) as client:
            for task_id in stream:  # one fetch per event, as it arrives; no retry (Bitrix never re-sends)
                answer = client.post("tasks.task.result.list", json={"taskId": task_id})
                if answer.status_code == 200:
                    ok.add(task_id)
        elapsed = time.monotonic() - started
        counts = request_counts(sim, since)
    return {"events": len(stream), **counts, "synced": len(ok), "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--with-results", type=int, default=30, help="tasks given a result with no event")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gather", type=float, default=0.3, help="B24NOTIFY_GATHER_SECONDS for the fleet")
    parser.add_argument("--debounce-max", type=float, default=5.0,
                        help="B24NOTIFY_DEBOUNCE_MAX_SECONDS: a burst longer than this reads a task again")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")

    rows = {"b24notify fleet": run_fleet(args, redis_url), "naive (1 fetch per event)": run_naive(args)}
    print(f"\nBurst of {args.events} events over {args.tasks} tasks, portal bucket 50 deep draining 2/s, "
          f"{args.workers} workers, debounce 1 s (trailing, capped at {args.debounce_max:g} s), "
          f"gather {args.gather} s; "
          f"{args.with_results} tasks carry a result pinned without an event "
          f"(the fleet sent {rows['b24notify fleet'].get('messages', 0)} chat messages for them)\n")
    print("| integration | REST requests | result-list requests | chat requests | other | 503s "
          "| tasks synced | seconds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(f"| {name} | {r.get('requests', 0)} | {r.get('fetch', 0)} | {r.get('chat', 0)} | {r.get('other', 0)} "
              f"| {r.get('503', 0)} | {r['synced']}/{args.tasks} | {r['seconds']:.1f} |")
    fleet, naive = rows["b24notify fleet"], rows["naive (1 fetch per event)"]
    print(f"\ntasks fetched (batch sub-calls): {fleet.get('task_fetches', 0)} for {args.tasks} tasks")
    print(f"fewer requests: {naive.get('requests', 0) / max(1, fleet.get('requests', 0)):.0f}x; "
          f"result-list requests vs ⌈T/50⌉ = {-(-args.tasks // 50)}: {fleet.get('fetch', 0)}")


if __name__ == "__main__":
    main()
