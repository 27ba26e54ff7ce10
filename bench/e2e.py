"""End-to-end benchmark: event → chat message latency through real processes, b24notify (serve +
N workers, two debounce settings) against a bare synchronous handler, side by side in one run.

    .venv/bin/python bench/e2e.py [--tasks 200] [--rate 20] [--workers 2] [--debounce 1 0] [--poll 0.1]
                                  [--bucket-tasks 30] [--bucket-rate 1] [--no-bucket] [--no-main]
                                  [--routing {fixed,people,both}] [--keep-logs]

Each configuration gets a fresh simulator (in this process), SMTP sink and Redis key prefix:
create the tasks through the simulator's REST, start the handler, play a few warm-up results, then
post one result per task (a comment with AS_RESULT=Y, which fires ONTASKCOMMENTADD) at a steady
rate. Latency is measured on the simulator's own clock, from the moment it queued the event
(``/_sim/events`` ``queued_at``) to the moment it answered the ``im.message.add`` that carries
that result (``/_sim/calls`` ``at``): both floats from one ``time.time()``. The chat messages'
own ``created_at`` is useless here, the portal stamps it to the second.

The main runs turn the portal's rate limit off (simulator ``bucket_capacity=0``, and b24notify's
own fleet budget ``B24_RATE_LIMIT`` raised to match); the bucket runs use the default 2/50 on
both sides, fewer events, and the posts count against the bucket like any integration's.

``--routing`` picks the bucket runs' routing: ``fixed`` (NOTIFY_CHAT to one dialog, as the main
runs), ``people`` (``NOTIFY_PEOPLE=creator,auditors``, no chat, no e-mail: each task names three
people to tell, none of them the result's author, reached by a personal notification,
``im.notify.system.add``) or ``both``, side by side in a REST-cost table: requests per result and
per alert (recipient × result). A people alert's latency runs from the event queued to the portal's
answer of the request carrying its notification (a ``batch``, usually).

Needs Redis at REDIS_URL (default redis://127.0.0.1:6379/14; each run uses its own prefix and
deletes its keys afterwards).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from redis import Redis

from b24notify.devtools.simulator import RunningSimulator, SimulatorConfig
from b24notify.devtools.smtp_sink import SmtpSink
from b24notify.settings import Settings
from bench import _people
from bench._fleet import BareHandler, Fleet, delete_keys, wait_until

WARMUP_TASKS = 5
WARMUP_PAUSE_SECONDS = 2.5
MAX_TASKS = 2000
DIALOG_ID = "chat42"
UNLIMITED_RATE = "100000/100000"  # b24notify's own budget when the portal's bucket is off
MARK = re.compile(r"res-(\d+)-end")
BATCHED_READ = re.compile(r"^r(\d+)$")  # b24notify's batch key for one task's result list
TASK_PARAM = re.compile(r"'taskId': (\d+)")  # the same read made alone (the bare handler)
OUR_OWN_CALLS = ("tasks.task.add", "task.commentitem.add")  # the people in the portal, not the handler


def percentile(values: list[float], p: float) -> float:
    """Nearest rank, as bench/_servers.py computes it."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def revision() -> str:
    """The commit measured, "-dirty" when the working tree differs from it."""
    try:
        found = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parent,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return found.stdout.strip() or "unknown"


def timing_settings(poll: float) -> str:
    """The product's other timing knobs, as every b24notify row runs them: ours, or their defaults."""
    shown = [f"B24NOTIFY_POLL_SECONDS={poll:g}"]
    for name in ("b24notify_gather_seconds", "b24notify_debounce_max_seconds"):
        if (known := Settings.model_fields.get(name)) is not None:
            shown.append(f"{name.upper()}={known.default:g} (default)")
    return ", ".join(shown)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Scenario:
    handler: str  # "b24notify" or "bare"
    tasks: int
    rate: float  # results posted per second
    debounce: float | None = None  # b24notify only
    bucket: bool = False  # the portal's default 2/50 leaky bucket on
    routing: str = "fixed"  # "fixed": NOTIFY_CHAT; "people": NOTIFY_PEOPLE (b24notify only)

    @property
    def people(self) -> bool:
        return self.routing == "people"

    @property
    def recipients(self) -> int:
        """Alerts per result."""
        return len(_people.RECIPIENTS) if self.people else 1

    @property
    def name(self) -> str:
        who = (f"b24notify, B24NOTIFY_DEBOUNCE_SECONDS={self.debounce:g}" if self.handler == "b24notify"
               else "bare handler")
        routed = f", NOTIFY_PEOPLE={_people.NOTIFY_PEOPLE}" if self.people else ""
        return f"{who}{', bucket 2/50' if self.bucket else ''}{routed}"


@dataclass
class Outcome:
    scenario: Scenario
    events: int = 0  # ONTASKCOMMENTADD the handler answered 2xx
    events_failed: int = 0  # refused, timed out or failed to connect: the portal never resends
    latencies_ms: list[float] = field(default_factory=list)
    to_read_ms: list[float] = field(default_factory=list)  # event queued → its result list answered
    messages: int = 0
    duplicates: int = 0
    missing: int = 0
    seconds: float = 0.0  # first event queued → last message posted
    mails: int = 0
    posts_refused: int = 0  # our own posts that hit QUERY_LIMIT_EXCEEDED and were retried
    settled: bool = True  # nothing in flight, due or leased when we counted
    rest_calls: Counter[str] = field(default_factory=Counter)
    rest_errors: Counter[str] = field(default_factory=Counter)
    # Alerts: recipient × result, each a chat message (fixed) or a personal notification (people).
    alerts: int = 0  # distinct (result, recipient) told
    alert_duplicates: int = 0
    alert_missing: int = 0
    alert_latencies_ms: list[float] = field(default_factory=list)  # event queued → its alert answered
    refused_503: int = 0  # the handler's requests the portal answered 503 (its bucket full)
    sub_calls: Counter[str] = field(default_factory=Counter)  # per method, batches opened
    carried: Counter[str] = field(default_factory=Counter)  # requests by what they carried

    @property
    def requests(self) -> int:
        return sum(self.rest_calls.values())

    @property
    def throughput(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")


class QueryLimit(Exception):
    pass


class Portal:
    """The people working in the simulated portal, through its REST API."""

    def __init__(self, webhook_url: str) -> None:
        self.http = httpx.Client(base_url=webhook_url, timeout=10)
        self.refused = 0

    def call(self, method: str, params: dict[str, Any]) -> Any:
        payload = self.http.post(method, json=params).json()
        if payload.get("error") == "QUERY_LIMIT_EXCEEDED":
            raise QueryLimit(method)
        if "error" in payload:
            raise RuntimeError(f"{method}: {payload}")
        return payload["result"]

    def add_task(self, title: str, *, created_by: int = 1, auditors: tuple[int, ...] = ()) -> int:
        fields: dict[str, Any] = {"TITLE": title, "RESPONSIBLE_ID": 503, "CREATED_BY": created_by}
        if auditors:
            fields["AUDITORS"] = list(auditors)
        return int(self.call("tasks.task.add", {"fields": fields})["task"]["id"])

    def post_result(self, task_id: int) -> None:
        """A comment marked as the result: fires ONTASKCOMMENTADD. Retried while the bucket is full."""
        fields = {"POST_MESSAGE": f"Bench result res-{task_id}-end", "AUTHOR_ID": 503, "AS_RESULT": "Y"}
        while True:
            try:
                self.call("task.commentitem.add", {"TASKID": task_id, "FIELDS": fields})
                return
            except QueryLimit:
                self.refused += 1
                time.sleep(0.25)

    def close(self) -> None:
        self.http.close()


def post_steadily(portal: Portal, task_ids: list[int], rate: float) -> None:
    started = time.monotonic()
    for i, task_id in enumerate(task_ids):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        portal.post_result(task_id)


def calls_in(call: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(method, batch key or "", its parameters as text) for each call one answered request made:
    a ``batch`` opens into those of its sub-calls that succeeded (each command is ``method?query``)."""
    if call["http_status"] != 200:
        return
    params = call["params"]
    if call["method"] != "batch":
        if not call["error"]:
            yield call["method"], "", str(params)
        return
    failed = {sub["key"] for sub in call.get("sub_calls", []) if sub["error"]}
    commands = params.get("cmd")
    for key, command in commands.items() if isinstance(commands, dict) else ():
        if key not in failed:
            method, _, query = str(command).partition("?")
            yield method, key, unquote_plus(query)


def chat_posts(calls: list[dict[str, Any]]) -> Iterator[tuple[int, float]]:
    """(task id, when the portal answered) for each chat message that names a bench result."""
    for call in calls:
        for method, _, text in calls_in(call):
            if method == "im.message.add" and (match := MARK.search(text)):
                yield int(match[1]), call["at"]


def result_reads(calls: list[dict[str, Any]]) -> Iterator[tuple[int, float]]:
    """(task id, when answered) for each read of a task's result list, alone or inside a batch."""
    for call in calls:
        for method, key, text in calls_in(call):
            if method != "tasks.task.result.list":
                continue
            match = BATCHED_READ.match(key) if key else TASK_PARAM.search(text)
            if match:
                yield int(match[1]), call["at"]


def messaged_tasks(sim: RunningSimulator) -> Counter[int]:
    """Chat messages per bench result, as the chat shows them."""
    return Counter(int(m[1]) for message in sim.control.messages() if (m := MARK.search(str(message["message"]))))


def told_tasks(sim: RunningSimulator, scenario: Scenario) -> set[int]:
    """The bench results every recipient has been told of: in the chat, or each of the task's
    people by a personal notification."""
    if not scenario.people:
        return set(messaged_tasks(sim))
    told: dict[int, set[int]] = {}
    for task_id, user_id in _people.notified(sim.control.notification_history()):
        told.setdefault(task_id, set()).add(user_id)
    return {task_id for task_id, users in told.items() if users >= _people.RECIPIENTS}


def fleet_idle(redis: Redis, prefix: str) -> bool:
    """Nothing due, nothing leased: no sync and no delivery left to run, so no message to come."""
    return sum(int(redis.zcard(f"{prefix}:{kind}:{name}")) for kind in ("due", "lease")
               for name in ("tasks", "deliveries")) == 0


@contextmanager
def handler_for(scenario: Scenario, sim: RunningSimulator, sink: SmtpSink, args: argparse.Namespace,
                log_dir: Path) -> Iterator[tuple[str, Callable[[], bool]]]:
    """Start the handler under test; yields its webhook URL and an ``idle()`` check."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks/bitrix24"
    if scenario.handler == "bare":
        env = {"BARE_WEBHOOK_URL": sim.webhook_url, "BARE_APPLICATION_TOKEN": sim.config.application_token,
               "BARE_DIALOG_ID": DIALOG_ID}
        with BareHandler(env, port=port, log=log_dir / f"bare-{port}.log"):
            yield url, lambda: True  # it answers only after posting: idle once the events are
        return
    prefix = f"be2e{uuid.uuid4().hex[:8]}"
    env = {
        "REDIS_URL": args.redis_url, "B24NOTIFY_KEY_PREFIX": prefix, "B24NOTIFY_QUEUE": f"{prefix}-q",
        "B24_WEBHOOK_URL": sim.webhook_url, "B24_APPLICATION_TOKEN": sim.config.application_token,
        "B24NOTIFY_DEBOUNCE_SECONDS": f"{scenario.debounce:g}",
        "B24NOTIFY_POLL_SECONDS": f"{args.poll:g}",
        "B24_RATE_LIMIT": "2/50" if scenario.bucket else UNLIMITED_RATE,
        "B24NOTIFY_LOG_LEVEL": "INFO",
    }
    if scenario.people:
        # Personal notifications only: no chat, and no SMTP, so no e-mail to the people either.
        env["NOTIFY_PEOPLE"] = _people.NOTIFY_PEOPLE
    else:
        env.update({"NOTIFY_CHAT": DIALOG_ID, "NOTIFY_EMAIL": "team@example.com", "SMTP_URL": sink.url,
                    "EMAIL_FROM": "b24notify@example.com"})
    redis = Redis.from_url(args.redis_url)
    try:
        with Fleet(env, port=port, workers=args.workers, log_dir=log_dir):
            yield url, lambda: fleet_idle(redis, prefix)
    finally:
        delete_keys(args.redis_url, prefix, env["B24NOTIFY_QUEUE"])
        redis.close()


def run(scenario: Scenario, args: argparse.Namespace, log_dir: Path) -> Outcome:
    outcome = Outcome(scenario)
    config = SimulatorConfig(bucket_capacity=0)  # events off (no handler) while we set the stage
    with SmtpSink() as sink, RunningSimulator(config) as sim:
        portal = Portal(sim.webhook_url)
        people: dict[str, Any] = ({"created_by": _people.CREATOR, "auditors": _people.AUDITORS} if scenario.people
                                  else {})
        try:
            warmup = [portal.add_task(f"Warm-up task {i}", **people) for i in range(WARMUP_TASKS)]
            measured = [portal.add_task(f"Bench task {i}", **people) for i in range(scenario.tasks)]
            with handler_for(scenario, sim, sink, args, log_dir) as (url, idle):
                sim.control.configure(handler_url=url)
                # Warm-up: connections, Lua scripts, first imports and, for people, the user.get
                # cache of the three people: not measured.
                post_steadily(portal, warmup, 10)
                wait_until(lambda: set(warmup) <= told_tasks(sim, scenario), 30, "warm-up results got no message")
                wait_until(lambda: sim.control.wait_events(1) and idle(), 30, "warm-up did not settle")
                # The warm-up's 10/s is not the measured rate: let the intake's one-second windows
                # (burst detection, the debounce's leading edge) forget it first.
                time.sleep(WARMUP_PAUSE_SECONDS)
                if scenario.bucket:
                    sim.control.configure(bucket_capacity=50, bucket_drain_per_second=2.0)
                post_steadily(portal, measured, scenario.rate)
                deadline = time.monotonic() + args.drain
                while time.monotonic() < deadline and not set(measured) <= told_tasks(sim, scenario):
                    time.sleep(0.25)
                # Quiet (no event in flight, nothing due or leased) before counting duplicates.
                outcome.settled = quiet_within(lambda: bool(sim.control.wait_events(1)) and idle(), args.drain)
                events = sim.control.events()
                shown = messaged_tasks(sim)
                history = sim.control.notification_history()
                log = sim.control.calls()
            outcome.mails = len(sink.messages)
        finally:
            outcome.posts_refused = portal.refused
            portal.close()
    measure(outcome, set(measured), events, shown, log["calls"])
    if scenario.people:
        measure_people(outcome, set(measured), events, history, log["calls"])
    return outcome


def quiet_within(quiet: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not quiet():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def measure(outcome: Outcome, measured: set[int], events: list[dict[str, Any]], shown: Counter[int],
            calls: list[dict[str, Any]]) -> None:
    queued_at: dict[int, float] = {}
    for event in events:
        if event["event"] != "ONTASKCOMMENTADD" or event["task_id"] not in measured:
            continue
        queued_at.setdefault(event["task_id"], event["queued_at"])
        if event["outcome"] == "sent":
            outcome.events += 1
        else:
            outcome.events_failed += 1
    posted: dict[int, float] = {}
    for task_id, at in chat_posts(calls):
        if task_id in measured:
            posted.setdefault(task_id, at)
    read: dict[int, float] = {}
    for task_id, at in result_reads(calls):
        if task_id in queued_at and at >= queued_at[task_id]:
            read.setdefault(task_id, at)
    outcome.latencies_ms = [(posted[t] - queued_at[t]) * 1000 for t in posted if t in queued_at]
    outcome.to_read_ms = [(read[t] - queued_at[t]) * 1000 for t in read]
    counts = {t: shown[t] for t in measured}
    outcome.messages = sum(counts.values())
    outcome.duplicates = sum(n - 1 for n in counts.values() if n > 1)
    outcome.missing = sum(1 for n in counts.values() if n == 0)
    if queued_at:
        began = min(queued_at.values())
        if posted:
            outcome.seconds = max(posted.values()) - began
        # The handler's requests from the first measured event on: what it spent of the portal.
        for call in calls:
            if call["at"] >= began and call["method"] not in OUR_OWN_CALLS:
                outcome.rest_calls[call["method"]] += 1
                if call["error"]:
                    outcome.rest_errors[call["error"]] += 1
                outcome.refused_503 += call["http_status"] == 503
                if call["http_status"] == 200:
                    outcome.sub_calls.update(_people.sub_calls(call))
                outcome.carried[_people.carried(call)] += 1
    # Fixed routing: an alert is a result's chat message.
    outcome.alerts = sum(1 for n in counts.values() if n > 0)
    outcome.alert_duplicates, outcome.alert_missing = outcome.duplicates, outcome.missing
    outcome.alert_latencies_ms = list(outcome.latencies_ms)


def measure_people(outcome: Outcome, measured: set[int], events: list[dict[str, Any]],
                   history: list[dict[str, Any]], calls: list[dict[str, Any]]) -> None:
    """People routing: an alert is one person's notification of one result; its latency runs from
    the event queued to the answer of the request that carried the notification."""
    queued_at: dict[int, float] = {}
    for event in events:
        if event["event"] == "ONTASKCOMMENTADD" and event["task_id"] in measured:
            queued_at.setdefault(event["task_id"], event["queued_at"])
    answered: dict[tuple[int, int], float] = {}
    for task_id, user_id, at in _people.notify_posts(calls):
        if task_id in measured:
            answered.setdefault((task_id, user_id), at)
    outcome.alert_latencies_ms = [(at - queued_at[t]) * 1000 for (t, _), at in answered.items() if t in queued_at]
    counts = _people.notified(history)
    wanted = {(t, u) for t in measured for u in _people.RECIPIENTS}
    told = {pair: counts[pair] for pair in wanted if counts[pair] > 0}
    outcome.alerts = len(told)
    outcome.alert_duplicates = sum(n - 1 for n in told.values()) + sum(
        n for (t, u), n in counts.items() if t in measured and (t, u) not in wanted)  # someone not to tell
    outcome.alert_missing = len(wanted) - len(told)
    if queued_at and answered:
        outcome.seconds = max(answered.values()) - min(queued_at.values())


def print_table(outcomes: list[Outcome], args: argparse.Namespace, measured_at: str) -> None:
    print(f"\nevent → chat message at {measured_at}, on the simulator's clock (event queued → im.message.add "
          f"answered, alone or in a batch); b24notify: {args.workers} workers, {timing_settings(args.poll)}; "
          f"{WARMUP_TASKS} warm-up results per row not counted; msg/s = chat messages / (first event queued → "
          f"last message)\n")
    print("| configuration | events | offered/s | p50 ms | p95 ms | p99 ms | max ms | msg/s | chat messages "
          "| duplicates | missing |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for o in outcomes:
        if o.scenario.people:
            continue  # no chat message: in the REST-cost table below
        ms = o.latencies_ms
        print(f"| {o.scenario.name} | {o.events} | {o.scenario.rate:g} | {percentile(ms, 50):.0f} "
              f"| {percentile(ms, 95):.0f} | {percentile(ms, 99):.0f} | {max(ms, default=float('nan')):.0f} "
              f"| {o.throughput:.1f} "
              f"| {o.messages} | {o.duplicates} | {o.missing} |")
    print()
    for o in outcomes:
        per_event = {m: round(n / max(1, o.events), 2) for m, n in sorted(o.rest_calls.items())}
        notes = [f"event → result list read p50 {percentile(o.to_read_ms, 50):.0f} ms, "
                 f"p95 {percentile(o.to_read_ms, 95):.0f} ms", f"REST requests per event {per_event}",
                 f"e-mails {o.mails}"]
        if o.events_failed:
            notes.append(f"events not delivered {o.events_failed}")
        if o.rest_errors:
            notes.append(f"portal refusals {dict(o.rest_errors)}")
        if o.posts_refused:
            notes.append(f"our posts refused by the bucket and retried {o.posts_refused}")
        if not o.settled:
            notes.append(f"NOT QUIET after {args.drain:g} s: work was still due or leased when counted")
        print(f"- {o.scenario.name}: " + "; ".join(notes))
    print_cost_table([o for o in outcomes if o.scenario.bucket])


def print_cost_table(outcomes: list[Outcome]) -> None:
    """Requests per result and per alert, fixed-target and people routing side by side."""
    if not outcomes:
        return
    print("\nREST cost under the 2/50 bucket (simulator bucket_capacity=50, drain 2/s; B24_RATE_LIMIT=2/50). "
          f"fixed: NOTIFY_CHAT={DIALOG_ID} (+ NOTIFY_EMAIL over SMTP, which costs no REST request); "
          f"people: NOTIFY_PEOPLE={_people.NOTIFY_PEOPLE}, no NOTIFY_CHAT and no SMTP_URL/EMAIL_FROM/NOTIFY_EMAIL "
          f"(personal notifications only, so both rows count the same kind of request); each task names "
          f"{len(_people.RECIPIENTS)} people to tell (creator {_people.CREATOR}, auditors "
          f"{', '.join(map(str, _people.AUDITORS))}), results written by {_people.AUTHOR}. An alert is recipient × "
          "result: a chat message (fixed) or a personal notification (people, distinct in the simulator's "
          "notification history). Requests: the handler's, from the first measured event on (the people's own "
          f"{' and '.join(OUR_OWN_CALLS)} left out), refused ones included; warm-up ({WARMUP_TASKS} results, "
          "user.get cached) not counted. Latency per alert: event queued → the portal's answer of the request "
          "carrying its message/notification.\n")
    print("| configuration | routing | results posted | alerts delivered | alert sub-calls | REST requests "
          "| requests/result | requests/alert | 503s | user.get sub-calls | p50 ms | p99 ms | duplicates "
          "| missing |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for o in outcomes:
        method = _people.NOTIFY if o.scenario.people else "im.message.add"
        ms = o.alert_latencies_ms
        routing = (f"people ({o.scenario.recipients}/result)" if o.scenario.people
                   else "fixed (bare)" if o.scenario.handler == "bare" else "fixed")
        print(f"| {o.scenario.name} | {routing} | {o.scenario.tasks} | {o.alerts} | {o.sub_calls[method]} "
              f"| {o.requests} | {o.requests / max(1, o.scenario.tasks):.2f} | {o.requests / max(1, o.alerts):.2f} "
              f"| {o.refused_503} | {o.sub_calls[_people.USER_GET]} | {percentile(ms, 50):.0f} "
              f"| {percentile(ms, 99):.0f} | {o.alert_duplicates} | {o.alert_missing} |")
    print()
    for o in outcomes:
        method = _people.NOTIFY if o.scenario.people else "im.message.add"
        carrying = sum(n for what, n in o.carried.items() if method in what)
        notes = [f"requests by what they carried {dict(o.carried.most_common())}",
                 f"{method} per request carrying it {o.sub_calls[method] / max(1, carrying):.2f}",
                 f"sub-calls {dict(o.sub_calls.most_common())}"]
        print(f"- {o.scenario.name}: " + "; ".join(notes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200, help="tasks, one measured result each")
    parser.add_argument("--rate", type=float, default=20.0, help="results posted per second")
    parser.add_argument("--workers", type=int, default=2, help="b24notify worker processes")
    parser.add_argument("--poll", type=float, default=0.1, help="B24NOTIFY_POLL_SECONDS (product default 0.1)")
    parser.add_argument("--debounce", type=float, nargs="+", default=[1.0, 0.0],
                        help="B24NOTIFY_DEBOUNCE_SECONDS values to run (product default 1)")
    parser.add_argument("--bucket-tasks", type=int, default=30, help="events in the runs with the 2/50 bucket")
    parser.add_argument("--bucket-rate", type=float, default=1.0, help="results per second with the bucket on")
    parser.add_argument("--no-bucket", action="store_true", help="skip the runs with the 2/50 bucket")
    parser.add_argument("--no-main", action="store_true",
                        help="skip the runs without the bucket (run only the bucket runs)")
    parser.add_argument("--routing", choices=("fixed", "people", "both"), default="both",
                        help="the bucket runs' routing: NOTIFY_CHAT (fixed), NOTIFY_PEOPLE=creator,auditors "
                             "with 3 people per task (people), or both side by side")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the last messages")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs and print where")
    args = parser.parse_args()
    args.redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    if max(args.tasks, args.bucket_tasks) > MAX_TASKS:
        parser.error(f"at most {MAX_TASKS} tasks: the simulator's call log, where we read the times, keeps "
                     "the last 10,000 calls")

    if args.no_main and args.no_bucket:
        parser.error("--no-main and --no-bucket leave nothing to run")
    scenarios = []
    if not args.no_main:
        scenarios += [Scenario("b24notify", args.tasks, args.rate, debounce=d) for d in args.debounce]
        scenarios.append(Scenario("bare", args.tasks, args.rate))
    if not args.no_bucket:
        routings = ("fixed", "people") if args.routing == "both" else (args.routing,)
        scenarios += [Scenario("b24notify", args.bucket_tasks, args.bucket_rate, debounce=args.debounce[0],
                               bucket=True, routing=routing) for routing in routings]
        if "fixed" in routings:
            scenarios.append(Scenario("bare", args.bucket_tasks, args.bucket_rate, bucket=True))
    started, measured_at = time.monotonic(), revision()  # the processes start from this tree
    outcomes = []
    log_context: AbstractContextManager[str] = (
        nullcontext(tempfile.mkdtemp(prefix="b24notify-e2e-")) if args.keep_logs
        else tempfile.TemporaryDirectory(prefix="b24notify-e2e-"))
    with log_context as log_dir:
        if args.keep_logs:
            print(f"logs in {log_dir}", file=sys.stderr)
        for scenario in scenarios:
            began = time.monotonic()
            outcomes.append(run(scenario, args, Path(log_dir)))
            print(f"{scenario.name}: done in {time.monotonic() - began:.0f} s", file=sys.stderr)
    print_table(outcomes, args, measured_at)
    print(f"\nwhole run {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
