"""Reconciliation: how soon the real fleet notices a result pinned with NO event
(``tasks.task.result.addFromComment``, docs/protocol.md §2) among 1,000 watched tasks, and what share of
the portal's REST budget that costs, against a portal with the standard leaky bucket (50 deep,
draining 2/s).

    .venv/bin/python bench/reconcile.py [--tasks 1000] [--seconds 180] [--every 5] [--hot-seconds 30]
                                        [--workers 2] [--drain 90] [--keep-logs]

Set-up, with the portal's bucket off: ``b24notify serve`` + N ``b24notify worker``; the tasks are
created through REST (each fires ONTASKADD at the web process, so each becomes watched and active);
the tasks that will get a result receive a plain comment now (that fires ONTASKCOMMENTADD: it is
set-up, so the measured pins fire nothing); then wait until the fleet is idle (due and lease sets
empty) and turn the bucket on (50/2).

Measurement: for ``--seconds``, every ``--every`` seconds pin one of those comments as the result
(``tasks.task.result.addFromComment``: no event). Detection latency runs, on the simulator's own
clock, from the portal's answer to the pin (``/_sim/calls`` ``at``) to its answer to the
``im.message.add`` carrying that result — the moment the message enters ``/_sim/messages`` (whose
``created_at`` is stamped to the second, too coarse here). Pins late in the window get ``--drain``
more seconds to show. The fleet's REST requests answered inside the window are split into
reconcile polls (``batch`` of ``tasks.task.result.list``), details for the alert (``tasks.task.get``
/ ``user.get``), chat sends, discovery sweeps (``tasks.task.list``) and anything else, and divided
by the window's budget (2 requests/s × seconds). The bench's own pins hit the same bucket (they
are "the portal's other integrations") but are counted apart.

Needs Redis at REDIS_URL (default redis://127.0.0.1:6379/14; own key prefix, deleted afterwards).
Everything runs on 127.0.0.1. Process logs go to a temporary directory (``--keep-logs`` keeps it).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from redis import Redis

from b24notify.devtools.simulator import RunningSimulator, SimulatorConfig
from bench._fleet import Fleet, delete_keys, wait_idle
from bench._servers import free_port

DIALOG_ID = "chat1"
BUDGET_PER_SECOND = 2.0  # the portal's drain rate: what "share of the budget" is measured against
MARK = re.compile(r"pin-(\d+)-end")  # in the comment, so in the result text, so in the chat message
OUR_OWN_CALLS = frozenset({"tasks.task.add", "task.commentitem.add", "tasks.task.result.addFromComment"})


class QueryLimit(Exception):
    pass


def rest(client: httpx.Client, method: str, params: dict) -> Any:
    payload = client.post(method, json=params).json()
    if payload.get("error") == "QUERY_LIMIT_EXCEEDED":
        raise QueryLimit(method)
    if "error" in payload:
        raise RuntimeError(f"{method}: {payload}")
    return payload["result"]


def make_tasks(client: httpx.Client, count: int) -> list[int]:
    """Every task fires ONTASKADD at the fleet: watched, and active now."""
    return [int(rest(client, "tasks.task.add", {"fields": {"TITLE": f"Task {i}", "RESPONSIBLE_ID": 503}})
                ["task"]["id"]) for i in range(count)]


def add_comments(client: httpx.Client, tasks: list[int]) -> dict[int, int]:
    """One plain comment per task to be pinned later (fires ONTASKCOMMENTADD: set-up, not measured)."""
    return {task_id: int(rest(client, "task.commentitem.add",
                              {"TASKID": task_id, "FIELDS": {"POST_MESSAGE": f"Done pin-{task_id}-end",
                                                             "AUTHOR_ID": 503}}))
            for task_id in tasks}


def pin(client: httpx.Client, comment_id: int) -> int:
    """``addFromComment`` (no event); retried while the bucket is full. Returns the 503s it got."""
    refused = 0
    while True:
        try:
            rest(client, "tasks.task.result.addFromComment", {"commentId": comment_id})
            return refused
        except QueryLimit:
            refused += 1
            time.sleep(0.5)


def calls_in(call: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(method, its parameters as text) for each call one request made: a ``batch`` opens into its
    sub-calls (each command is ``method?query``)."""
    params = call["params"]
    if call["method"] != "batch":
        yield call["method"], str(params)
        return
    commands = params.get("cmd") if isinstance(params, dict) else None
    for command in commands.values() if isinstance(commands, dict) else ():
        method, _, query = str(command).partition("?")
        yield method, unquote_plus(query)


def kind_of(call: dict[str, Any]) -> str:
    methods = {m for m, _ in calls_in(call)} or {call["method"]}
    if methods & OUR_OWN_CALLS:
        return "bench"
    if "tasks.task.result.list" in methods:
        return "poll"
    if "im.message.add" in methods:
        return "chat"
    if "tasks.task.list" in methods:
        return "sweep"
    if methods & {"tasks.task.get", "user.get"}:
        return "details"
    return "other"


def measure(calls: list[dict[str, Any]], pins: dict[int, float], since: int, window: tuple[float, float]
            ) -> dict[str, Any]:
    """Detection latency per pinned task, and the window's requests by kind."""
    seen: dict[int, float] = {}
    counts: Counter[str] = Counter()
    for call in calls:
        if call["seq"] <= since:
            continue
        if call["http_status"] == 200:
            for method, text in calls_in(call):
                if method == "im.message.add" and (m := MARK.search(text)):
                    task_id = int(m[1])
                    if task_id in pins and call["at"] >= pins[task_id]:
                        seen.setdefault(task_id, call["at"])
        if not window[0] <= call["at"] <= window[1]:
            continue
        kind = kind_of(call)
        counts[kind] += 1
        if call["http_status"] == 503:
            counts[f"503 {kind}"] += 1
        if kind == "poll":
            counts["task polls"] += sum(1 for m, _ in calls_in(call) if m == "tasks.task.result.list")
        if kind == "sweep":
            counts["sweeps"] += 1  # a page of a sweep
    latencies = sorted(seen[t] - pins[t] for t in seen)
    return {"latencies": latencies, "undetected": len(pins) - len(seen), "counts": counts}


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1)]


def last_seq(sim: RunningSimulator) -> int:
    calls = sim.control.calls()["calls"]
    return int(calls[-1]["seq"]) if calls else 0


def messaged(sim: RunningSimulator) -> set[int]:
    return {int(m[1]) for message in sim.control.messages() if (m := MARK.search(str(message["message"])))}


def run(args: argparse.Namespace, redis_url: str, log_dir: Path) -> dict[str, Any]:
    prefix = f"brec{uuid.uuid4().hex[:8]}"
    port = free_port()
    rng = random.Random(args.seed)
    n_pins = max(1, int(args.seconds // args.every))
    with RunningSimulator(SimulatorConfig(bucket_capacity=0)) as sim:  # set-up is not what we measure
        env = {"REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": prefix, "B24NOTIFY_QUEUE": f"{prefix}-q",
               "B24_WEBHOOK_URL": sim.webhook_url, "B24_APPLICATION_TOKEN": sim.config.application_token,
               "NOTIFY_CHAT": DIALOG_ID, "B24NOTIFY_LOG_LEVEL": "INFO",
               "B24_RATE_LIMIT": "2/50", "B24_RATE_RESERVE": "0.2", "B24_RECONCILE_SHARE": "0.2",
               "B24NOTIFY_WATCH_HOT_SECONDS": f"{args.hot_seconds:g}"}
        redis = Redis.from_url(redis_url)
        client = httpx.Client(base_url=sim.webhook_url, timeout=10)
        try:
            with Fleet(env, port=port, workers=args.workers, log_dir=log_dir):
                sim.control.configure(handler_url=f"http://127.0.0.1:{port}/webhooks/bitrix24")
                started = time.monotonic()
                tasks = make_tasks(client, args.tasks)
                chosen = rng.sample(tasks, min(n_pins, len(tasks)))
                comments = add_comments(client, chosen)
                if not sim.control.wait_events(60):
                    raise RuntimeError("the simulator did not deliver its events")
                wait_idle(redis, prefix, 120)
                setup = time.monotonic() - started
                watched = sum(int(redis.zcard(k)) for k in redis.scan_iter(match=f"{prefix}:watch:*:next"))
                sim.control.configure(bucket_capacity=50, bucket_drain_per_second=BUDGET_PER_SECOND)
                since = last_seq(sim)
                pins: dict[int, float] = {}
                refused = 0
                window_start = time.time()
                for i, task_id in enumerate(chosen):
                    delay = window_start + i * args.every - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    refused += pin(client, comments[task_id])
                    pins[task_id] = time.time()  # refined below from the portal's own call log
                delay = window_start + args.seconds - time.time()
                if delay > 0:
                    time.sleep(delay)
                window_end = time.time()
                deadline = time.monotonic() + args.drain
                while time.monotonic() < deadline and not set(pins) <= messaged(sim):
                    time.sleep(1.0)
                calls = sim.control.calls()["calls"]
        finally:
            client.close()
            delete_keys(redis_url, prefix, env["B24NOTIFY_QUEUE"])
            redis.close()
    if calls and calls[0]["seq"] > since + 1:
        raise RuntimeError("the simulator's call log dropped calls of the window; shorten --seconds")
    by_comment = {comments[t]: t for t in pins}
    for call in calls:  # the pin's moment on the simulator's clock: when it answered addFromComment
        if call["seq"] > since and call["method"] == "tasks.task.result.addFromComment" \
                and call["http_status"] == 200:
            pinned = by_comment.get(int(call["params"].get("commentId", 0)))
            if pinned is not None:
                pins[pinned] = call["at"]
    outcome = measure(calls, pins, since, (window_start, window_end))
    return {**outcome, "watched": watched, "pins": len(pins), "pins_refused": refused, "setup": setup,
            "seconds": window_end - window_start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="watched tasks")
    parser.add_argument("--seconds", type=float, default=180, help="measurement window")
    parser.add_argument("--every", type=float, default=5, help="one pin every this many seconds")
    parser.add_argument("--hot-seconds", type=float, default=30,
                        help="B24NOTIFY_WATCH_HOT_SECONDS for the fleet (the product default is 30)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--drain", type=float, default=90, help="extra seconds for late pins to show")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")

    log_dir = Path(tempfile.mkdtemp(prefix="b24n-reconcile-"))
    try:
        r = run(args, redis_url, log_dir)
    finally:
        if args.keep_logs:
            print(f"process logs: {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    counts: Counter[str] = r["counts"]
    lat: list[float] = r["latencies"]
    budget = BUDGET_PER_SECOND * r["seconds"]
    fleet = sum(counts[k] for k in ("poll", "details", "chat", "sweep", "other"))
    fleet_503 = sum(counts[f"503 {k}"] for k in ("poll", "details", "chat", "sweep", "other"))

    def share(n: int) -> str:
        return f"{100 * n / budget:.1f} %"

    print(f"\n{r['watched']} watched tasks (all active in the last hour), one result pinned with no event every "
          f"{args.every:g} s for {r['seconds']:.0f} s, portal bucket 50 deep draining 2/s, {args.workers} workers, "
          f"B24NOTIFY_WATCH_HOT_SECONDS={args.hot_seconds:g}, B24_RECONCILE_SHARE=0.2; set-up took "
          f"{r['setup']:.0f} s\n")
    print("| tasks watched | pins | detection p50 s | p95 s | max s | REST requests | share of the 2/s budget "
          "| 503s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    undetected = f" ({r['undetected']} not shown within {args.drain:g} s)" if r["undetected"] else ""
    print(f"| {r['watched']} | {r['pins']}{undetected} | {pct(lat, 50):.1f} | {pct(lat, 95):.1f} "
          f"| {max(lat, default=float('nan')):.1f} | {fleet} | {share(fleet)} | {fleet_503} |")
    print(f"\nthe fleet's requests in the window ({budget:.0f} = 2/s × {r['seconds']:.0f} s):\n")
    print("| kind | requests | share of the budget | 503s |")
    print("| --- | ---: | ---: | ---: |")
    for kind, name in (("poll", "reconcile polls (batch of tasks.task.result.list)"),
                       ("sweep", "discovery sweeps (tasks.task.list)"),
                       ("details", "alert details (tasks.task.get / user.get)"),
                       ("chat", "chat sends (im.message.add)"), ("other", "other")):
        print(f"| {name} | {counts[kind]} | {share(counts[kind])} | {counts[f'503 {kind}']} |")
    print(f"| bench's own pins (not the fleet's) | {counts['bench']} | {share(counts['bench'])} "
          f"| {counts['503 bench']} |")
    polls = counts["task polls"]
    interval = r["watched"] * r["seconds"] / polls if polls else float("nan")
    print(f"\ntask polls: {polls} in {r['seconds']:.0f} s = {polls / r['seconds']:.1f}/s, i.e. each watched task "
          f"re-read every {interval:.0f} s on average (configured: {args.hot_seconds:g} s; "
          f"{r['watched']} tasks at that interval need {r['watched'] / args.hot_seconds / 50:.2f} requests/s, "
          f"the reconcile slice is {0.2 * BUDGET_PER_SECOND:.2f}/s)")
    print(f"discovery sweep pages read in the window: {counts['sweeps']} (the sweep has its own 10 % of the "
          f"reconcile slice, {0.02 * BUDGET_PER_SECOND * 60:.1f} pages a minute; the first sweep after set-up lists "
          f"all {r['watched']} tasks changed in the last hour, {r['watched'] // 50} pages, page by page)")


if __name__ == "__main__":
    main()
