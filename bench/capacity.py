"""Capacity of one Redis primary: the due sets and the outbox, Lua-level, next to Redis's own ceiling.

    .venv/bin/python bench/capacity.py [--portals 1000] [--tasks 50] [--clients 4] [--seconds 8]

Simulates ``--portals`` portals (default 1,000) sending events (1 event/s each is the target the
derived figures are for). Client processes (``--clients``, default 4, to load both cores) run one
phase after another, all at once in each phase, as fast as they can; between phases the parent
reads Redis's ``INFO`` (CPU: ``used_cpu_sys`` + ``used_cpu_user``; ``used_memory``). Phases:

1. bare baselines: a pipelined ``EVALSHA`` of ``return 1``, and a pipelined ``ZADD`` +
   ``ZRANGEBYSCORE`` pair: what Redis itself does on this machine;
2. the web: ``schedule.lua`` for ``portal|task`` members, KEYS and ARGV built by
   ``SCHEDULE.keys_args`` exactly as ``service/app.py`` builds them (the product's default
   settings), sent pipelined as ``service/batching.py`` does (one write of EVALSHAs, answers read
   in order; ``--batch`` calls a write);
3. the dispatcher: ``claim.lua`` (50 members, gather 0.3 s, as ``workers/dispatcher.py``), then one
   RQ job enqueued per claim, and those jobs run by RQ ``SimpleWorker``s (a no-op job: RQ's own
   Redis traffic per job);
4. the sync job: its other round trips (triggers, halted, drop, state read, trace step, counter,
   watch; an approximation of ``workers/sync.py``), one ``gcra.lua`` per REST request,
   ``commit_sync.lua`` with a realistic state (3 results) and one or two deliveries (real
   ``Notice`` JSON), ``release.lua`` (done);
5. the delivery job: ``claim.lua`` on the delivery set (10, as the dispatcher), the job's round
   trips (records read, strikes, ``extend.lua`` renew, in-flight mark, the sent record with its
   detection histogram and trace step, as ``workers/deliver.py``), ``release.lua``.

The per-op Redis CPU time (µs of Redis CPU per call) is what the derived capacity is computed
from: the clients share the 2 cores with Redis, so the raw ops/s is the client's limit as much as
Redis's; µs/op is not. ``INFO`` is instance-wide: anything else using this Redis meanwhile counts.

Needs Redis at REDIS_URL (default redis://127.0.0.1:6379/14; its own key prefix and RQ queue,
every key deleted afterwards).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis
from rq import Queue, SimpleWorker

from b24notify.alerts import Alert
from b24notify.diff import ChangeKind, StoredResult
from b24notify.dueset import Claim, DueSet
from b24notify.keys import DELIVERIES, TASKS, Keys, as_text, split_task_member, task_member
from b24notify.metrics import counter_field, record_detection
from b24notify.notices import Notice, Target
from b24notify.results import TaskResult
from b24notify.scripts import COMMIT_SYNC, GCRA, SCHEDULE
from b24notify.settings import Settings
from b24notify.task_info import TaskInfo
from b24notify.trace import TRACE_MAXLEN, TRACE_TTL_SECONDS, add_steps, delivery_step, sync_step
from b24notify.workers.deliver import KEEP_FINISHED_SECONDS, load_records, mark_sent

EPOCH = "bench-epoch"
RESULTS_PER_TASK = 3
REST_REQUESTS_PER_ALERT = 2.03  # README "Event → chat message" / "People routing": 2.03 requests an alert
JOB = "bench.capacity.noop"  # imported by the RQ worker by name


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


DEBOUNCE = float(_default("b24notify_debounce_seconds"))
DEBOUNCE_CAP = float(_default("b24notify_debounce_max_seconds"))
WATCH_HOT = float(_default("b24notify_watch_hot_seconds"))
LEASE = float(_default("b24notify_lease_seconds"))
GATHER = float(_default("b24notify_gather_seconds"))
SYNC_BATCH = int(_default("b24notify_sync_batch"))
DELIVERY_BATCH = int(_default("b24notify_delivery_batch"))
# Claims see the future: in a burst, schedule.lua puts runs on a grid up to three caps ahead.
HORIZON = DEBOUNCE_CAP * 3 + 2


def noop(claims: list[list[str]]) -> int:
    """The RQ job the bench enqueues: RQ's own cost per job, none of ours."""
    return len(claims)


@dataclass(frozen=True)
class Config:
    url: str
    prefix: str
    queue: str
    portals: int
    tasks: int
    clients: int
    seconds: float
    batch: int
    burst_threshold: int


PHASES: list[tuple[str, str, str]] = [  # (id, operation shown, batch shown)
    ("bare_eval", "bare: EVALSHA `return 1`, pipelined", "{batch}"),
    ("bare_zset", "bare: ZADD + ZRANGEBYSCORE pair, pipelined", "{batch}"),
    ("schedule", "web: schedule.lua (event), pipelined", "{batch}"),
    ("claim", "dispatcher: claim.lua tasks", "≤50"),
    ("enqueue", "dispatcher: RQ enqueue (1 job a claim)", "1"),
    ("rq_run", "worker: RQ job run (SimpleWorker, no-op)", "1"),
    ("sync_other", "sync: other round trips (approx.)", "1 task"),
    ("gcra", "sync/delivery: gcra.lua (1 a REST request)", "1"),
    ("commit", "sync: commit_sync.lua (3 results, 1–2 deliveries)", "1"),
    ("release", "sync: release.lua (done)", "1"),
    ("d_claim", "dispatcher: claim.lua deliveries", "≤10"),
    ("d_job", "delivery: job round trips, per delivery", "≤10"),
    ("d_release", "delivery: release.lua (done)", "1"),
]


@dataclass
class PhaseStats:
    ops: int = 0
    active: float = 0.0  # seconds this client worked in the phase
    latencies: list[float] = field(default_factory=list)  # seconds a call (a pipelined call: its batch's round trip)
    extra: dict[str, int] = field(default_factory=dict)


def portal_name(i: int) -> str:
    return f"p{i:05d}.bitrix24.com"


def notice_for(portal: str, task: int, result_id: int, target: Target) -> Notice:
    now = datetime.now(UTC)
    result = TaskResult(id=result_id, task_id=task, comment_id=result_id * 7, created_by=11, created_at=now,
                        updated_at=None, status=0, text="Готово: отчёт за квартал загружен, см. вложение. " * 3,
                        formatted_text="", files=(9001,))
    info = TaskInfo(id=task, title=f"Quarterly report #{task}", responsible_id=7, group_id=3, status=3,
                    created_by=5, accomplices=(8,), auditors=(9, 10))
    alert = Alert(portal=portal, portal_url=f"https://{portal}", kind=ChangeKind.NEW, change_key=f"{result_id}:new",
                  task=info, result=result, author_name="Ivan Petrov")
    return Notice((alert,), target, "ru")


class Client:
    """One client process: runs every phase in turn, holding what one phase hands the next."""

    def __init__(self, index: int, cfg: Config) -> None:
        self.index = index
        self.cfg = cfg
        self.redis = Redis.from_url(cfg.url)
        self.keys = Keys(cfg.prefix)
        self.tasks = DueSet(self.redis, self.keys, TASKS, clock=lambda: time.time() + HORIZON)
        self.deliveries = DueSet(self.redis, self.keys, DELIVERIES, clock=lambda: time.time() + HORIZON)
        self.queue = Queue(cfg.queue, connection=self.redis)
        self.portals = [portal_name(i) for i in range(index, cfg.portals, cfg.clients)]
        self.rng = random.Random(index)
        self.bare_sha = str(self.redis.script_load("return 1"))
        self.schedule_sha = str(self.redis.script_load(SCHEDULE.source))
        self.gcra = GCRA.on(self.redis)
        self.task_claims: list[list[Claim]] = []
        self.delivery_claims: list[list[Claim]] = []
        self.job_ids: list[str] = []
        self.claimed: list[Claim] = []  # the task claims in order, once the claim phase is over
        self.delivered: list[Claim] = []  # the delivery claims whose job ran, in order
        self.at = dict.fromkeys(("sync_other", "commit", "release", "d_job", "d_release"), 0)  # next to take
        self.commit_sync = COMMIT_SYNC.on(self.redis)
        self.result_seq = index * 10_000_000
        self.event_field = counter_field("b24notify_events", type="ONTASKCOMMENTADD", outcome="accepted")
        self.conn = self.redis.connection_pool.get_connection()

    # -- helpers ----------------------------------------------------------------------------------

    def _pipelined(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One write, the answers read in order: what service/batching.py does (no MULTI)."""
        packed = self.conn.pack_commands(commands)  # type: ignore[no-untyped-call]  # redis-py: untyped
        self.conn.send_packed_command(packed)  # type: ignore[no-untyped-call]
        return [self.conn.read_response() for _ in commands]

    def _loop(self, deadline: float, step: Callable[[], int]) -> PhaseStats:
        stats = PhaseStats()
        start = time.perf_counter()
        while time.time() < deadline:
            t0 = time.perf_counter()
            done = step()
            if done == 0:
                break  # no work left for this phase
            stats.latencies.append(time.perf_counter() - t0)
            stats.ops += done
        stats.active = time.perf_counter() - start
        return stats

    def _member(self) -> tuple[str, int]:
        return self.rng.choice(self.portals), self.rng.randrange(1, self.cfg.tasks + 1)

    # -- phases -----------------------------------------------------------------------------------

    def run(self, phase: str, deadline: float) -> PhaseStats:
        step: Callable[[], int] = getattr(self, f"_{phase}")
        if phase == "rq_run":
            return self._rq_run(deadline)
        return self._loop(deadline, step)

    def _bare_eval(self) -> int:
        return len(self._pipelined([("EVALSHA", self.bare_sha, 0)] * self.cfg.batch))

    def _bare_zset(self) -> int:
        key, now = f"{self.cfg.prefix}:bare:z", time.time()
        commands: list[tuple[Any, ...]] = []
        for _ in range(self.cfg.batch):
            portal, task = self._member()
            commands.append(("ZADD", key, now, task_member(portal, task)))
            commands.append(("ZRANGEBYSCORE", key, "-inf", now, "LIMIT", 0, 1))
        self._pipelined(commands)
        return self.cfg.batch

    def _schedule(self) -> int:
        k, t = self.keys, self.tasks.k
        commands: list[tuple[Any, ...]] = []
        for _ in range(self.cfg.batch):
            portal, task = self._member()
            now = time.time()
            keys, args = SCHEDULE.keys_args(  # as service/app.py builds them
                due=t.due, lease=t.lease, pending=t.pending, since=t.since,
                drop=k.drop(), metrics=k.metrics(), watch_active=k.watch_active(portal),
                watch_next=k.watch_next(portal), intake_rate=k.intake_rate(),
                window=t.window, wake=t.wake, trace=k.trace(portal), triggers=t.trigger,
                member=task_member(portal, task), at=now + DEBOUNCE, also_drop="0",
                metrics_field=self.event_field, now=now, debounce_cap=DEBOUNCE_CAP, task_id=str(task),
                first_poll=WATCH_HOT, burst_threshold=self.cfg.burst_threshold,
                trigger="event", event="ONTASKCOMMENTADD", trace_maxlen=TRACE_MAXLEN, trace_ttl=TRACE_TTL_SECONDS,
            )
            commands.append(("EVALSHA", self.schedule_sha, len(keys), *keys, *args))
        self._pipelined(commands)
        return self.cfg.batch

    def _claim(self) -> int:
        claims = self.tasks.claim(SYNC_BATCH, LEASE, gather=GATHER)
        if claims:
            self.task_claims.append(claims)
        return len(claims)

    def _enqueue(self) -> int:
        held = self.task_claims[len(self.job_ids):len(self.job_ids) + 1]
        if not held:
            return 0
        job = self.queue.enqueue_call(JOB, args=([[c.member, c.token] for c in held[0]],),
                                      timeout=600, result_ttl=0, failure_ttl=24 * 3600,
                                      description=f"sync x{len(held[0])}")
        self.job_ids.append(job.id)
        return 1

    def _rq_run(self, deadline: float) -> PhaseStats:
        stats = PhaseStats()
        start = time.perf_counter()
        # One burst run until the queue is empty (its start-up cost once; the queue holds what the
        # enqueue phase put in, so it ends). The parent counts the jobs run from the queue's length.
        worker = SimpleWorker([self.queue], connection=self.redis, name=f"{self.cfg.prefix}-w{self.index}")
        if time.time() < deadline and self.queue.count:
            worker.work(burst=True, logging_level="WARNING")
        stats.active = time.perf_counter() - start
        return stats

    def _next(self, phase: str, items: list[Any], limit: int | None = None) -> Any:
        """The next item of ``items`` (up to ``limit``) for ``phase``; None when all are done."""
        position = self.at[phase]
        if position >= (len(items) if limit is None else min(limit, len(items))):
            return None
        self.at[phase] = position + 1
        return items[position]

    def _sync_other(self) -> int:
        # The sync job's non-Lua round trips for one task (a job at 1,000 portals holds ~1 task a portal).
        if not self.claimed:
            self.claimed = [c for batch in self.task_claims for c in batch]
        claim = self._next("sync_other", self.claimed)
        if claim is None:
            return 0
        portal, task = split_task_member(claim.member)
        k = self.keys
        self.tasks.take_triggers([claim.member])
        self.redis.get(k.halted(portal))
        self.redis.smismember(k.drop(), [claim.member])
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(k.results(portal, task))
        pipe.hgetall(k.gone_results(portal, task))
        pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        add_steps(pipe, k, portal, [sync_step(task, trigger="event", requests=1, job=1, outcome="synced",
                                              changes={"new": [1]}, queued=1)])
        pipe.hincrby(k.metrics(), counter_field("b24notify_jobs", portal=portal, outcome="synced"), 1)
        pipe.zadd(k.watch_active(portal), {str(task): time.time()})
        pipe.zadd(k.watch_synced(portal), {str(task): time.time()})
        pipe.zadd(k.watch_next(portal), {str(task): time.time() + WATCH_HOT})
        pipe.execute()
        return 1

    def _gcra(self) -> int:
        portal = self.rng.choice(self.portals)
        self.gcra(tat=self.keys.budget(portal), emission=0.5, tau=(48 - 1) * 0.5, action="take", seconds=0)
        return 1

    def _commit(self) -> int:
        claim = self._next("commit", self.claimed)
        if claim is None:
            return 0
        portal, task = split_task_member(claim.member)
        self.result_seq += RESULTS_PER_TASK
        ids = range(self.result_seq - RESULTS_PER_TASK + 1, self.result_seq + 1)
        state = {str(rid): StoredResult(rid, 0, f"{rid:016x}").to_json() for rid in ids}
        targets = [Target("chat", "chat42")] + ([Target("notify", "", user_id=9)] if task % 2 else [])
        notices = [notice_for(portal, task, self.result_seq, target) for target in targets]
        k = self.keys
        queued = self.commit_sync(
            token=self.tasks.k.token, results=k.results(portal, task), delivery_due=self.deliveries.k.due,
            attempts=self.tasks.k.attempts, epoch=k.epoch(),
            member=claim.member, claim_token=claim.token, now=time.time(), mode="store", state=json.dumps(state),
            delivery_prefix=k.delivery_prefix(),
            deliveries=json.dumps([[n.key, n.target.channel, n.to_json()] for n in notices]),
            baseline_epoch=EPOCH, results_ttl=30 * 86400 + 3600, delivery_ttl=KEEP_FINISHED_SECONDS,
        )
        if int(queued) < 0:
            raise RuntimeError(f"commit_sync.lua answered {queued}: the bench's lease or epoch is wrong")
        return 1

    def _release(self) -> int:
        claim = self._next("release", self.claimed, limit=self.at["commit"])  # the committed ones
        if claim is None:
            return 0
        if not self.tasks.complete(claim):
            raise RuntimeError("release.lua: the lease was stale")
        return 1

    def _d_claim(self) -> int:
        claims = self.deliveries.claim(DELIVERY_BATCH, LEASE)
        if claims:
            self.delivery_claims.append(claims)
        return len(claims)

    def _d_job(self) -> int:
        claims = self._next("d_job", self.delivery_claims)
        if claims is None:
            return 0
        k, now = self.keys, time.time()
        records = load_records(self.redis, k, claims)
        self.deliveries.strikes([c.member for c in claims])
        self.deliveries.renew(claims, LEASE)
        pipe = self.redis.pipeline(transaction=False)
        for claim in claims:
            if records[claim.member].get("channel") == "chat":
                pipe.hset(k.delivery(claim.member), "in_flight", str(now))
        pipe.execute()
        pipe = self.redis.pipeline()  # as _record_sent: MULTI
        for claim in claims:
            notice = Notice.from_json(records[claim.member]["notice"])
            key = k.delivery(claim.member)
            mark_sent(pipe, key, portal=notice.portal, channel=notice.target.channel,
                      created_at=float(records[claim.member].get("created_at") or 0), attempts=0, now=now)
            record_detection(pipe, k, notice.portal, notice.target.channel, notice.alerts, now=now,
                             fallback=float(records[claim.member].get("created_at") or 0))
            add_steps(pipe, k, notice.portal, [delivery_step(
                notice.task_id, delivery=claim.member, recipient=notice.target.key, channel=notice.target.channel,
                attempt=1, outcome="sent", results=[a.result.id for a in notice.alerts])])
        pipe.execute()
        return len(claims)

    def _d_release(self) -> int:
        if not self.delivered:
            self.delivered = [c for batch in self.delivery_claims[:self.at["d_job"]] for c in batch]
        claim = self._next("d_release", self.delivered)
        if claim is None:
            return 0
        self.deliveries.complete(claim)
        return 1

    def forget_jobs(self) -> None:
        for chunk in range(0, len(self.job_ids), 500):
            ids = self.job_ids[chunk:chunk + 500]
            self.redis.delete(*[f"rq:job:{i}" for i in ids], *[f"rq:results:{i}" for i in ids])


def client_main(index: int, cfg: Config, barrier: Any, out: Any) -> None:
    client = Client(index, cfg)
    for phase, _, _ in PHASES:
        barrier.wait()
        stats = client.run(phase, time.time() + cfg.seconds)
        out.put((index, phase, stats))
        barrier.wait()
    client.forget_jobs()


def redis_info(redis: Redis) -> tuple[float, int, int]:
    """Redis's CPU seconds, used memory and network bytes (in + out) so far."""
    cpu, memory, stats = redis.info("cpu"), redis.info("memory"), redis.info("stats")
    return (float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), int(memory["used_memory"]),
            int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"]))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Row:
    phase: str
    label: str
    batch: str
    ops: int
    wall: float
    cpu: float  # Redis CPU seconds
    memory: int  # used_memory delta, bytes
    network: int  # bytes in + out (INFO stats), the phase's INFO calls included
    p50: float
    p99: float

    @property
    def rate(self) -> float:
        return self.ops / self.wall if self.wall else 0.0

    @property
    def us_per_op(self) -> float:
        return self.cpu / self.ops * 1e6 if self.ops else float("nan")


def measure(cfg: Config) -> tuple[list[Row], dict[str, float]]:
    redis = Redis.from_url(cfg.url)
    redis.hset(Keys(cfg.prefix).epoch(), mapping={"id": EPOCH, "since": str(time.time()), "by": "bench"})
    barrier = mp.Barrier(cfg.clients + 1)
    out: Any = mp.Queue()
    procs = [mp.Process(target=client_main, args=(i, cfg, barrier, out)) for i in range(cfg.clients)]
    for proc in procs:
        proc.start()
    rows: list[Row] = []
    means: dict[str, float] = {}
    for phase, label, batch in PHASES:
        cpu0, mem0, net0 = redis_info(redis)
        barrier.wait()
        start = time.perf_counter()
        got = [out.get(timeout=cfg.seconds + 120) for _ in procs]
        barrier.wait()
        cpu1, mem1, net1 = redis_info(redis)
        stats: list[PhaseStats] = [s for _, _, s in got]
        wall = max(s.active for s in stats) or time.perf_counter() - start
        latencies = [x for s in stats for x in s.latencies]
        ops = sum(s.ops for s in stats)
        if phase == "rq_run":  # the jobs the enqueue phase queued, less those still queued
            ops = rows[-1].ops - Queue(cfg.queue, connection=redis).count
        rows.append(Row(phase, label, batch.format(batch=cfg.batch), ops, wall, cpu1 - cpu0, mem1 - mem0, net1 - net0,
                        percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000))
        if phase in ("claim", "d_claim"):
            means[phase] = ops / max(1, sum(len(s.latencies) for s in stats))  # members a claim
        print(f"  {label}: {ops} ops in {wall:.1f} s", file=sys.stderr, flush=True)
    for proc in procs:
        proc.join(timeout=120)
    means.update(sizes(redis, Keys(cfg.prefix)))
    return rows, means


def sizes(redis: Redis, keys: Keys) -> dict[str, float]:
    """Bytes (MEMORY USAGE) of what stays: a sent delivery record, a task's results hash, a trace
    entry; the mean of a sample."""
    def mean_usage(pattern: str, per: Callable[[bytes], int] = lambda _: 1, sample: int = 30) -> float:
        found = []
        for key in redis.scan_iter(match=pattern, count=1000):
            found.append(key)
            if len(found) >= sample:
                break
        if not found:
            return float("nan")
        return sum(int(redis.memory_usage(k, samples=0) or 0) / max(1, per(k)) for k in found) / len(found)

    return {"delivery_bytes": mean_usage(keys.delivery_prefix() + "*"),
            "results_bytes": mean_usage(f"{keys.prefix}:results:*"),
            "trace_entry_bytes": mean_usage(keys.trace_prefix() + "*", lambda k: int(redis.xlen(k)))}


def cleanup(cfg: Config) -> int:
    redis = Redis.from_url(cfg.url)
    deleted = 0
    Queue(cfg.queue, connection=redis).empty()  # type: ignore[no-untyped-call]  # rq: untyped
    for pattern in (f"{cfg.prefix}:*", f"rq:*{cfg.queue}*", f"rq:worker:{cfg.prefix}-w*", f"rq:workers:{cfg.queue}"):
        batch: list[bytes] = []
        for key in redis.scan_iter(match=pattern, count=2000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(redis.delete(*batch))
                batch = []
        if batch:
            deleted += int(redis.delete(*batch))
    redis.srem("rq:queues", f"rq:queue:{cfg.queue}")
    for worker in redis.smembers("rq:workers"):
        if as_text(worker).startswith(f"rq:worker:{cfg.prefix}-w"):
            redis.srem("rq:workers", worker)
    return deleted


def report(cfg: Config, rows: list[Row], means: dict[str, float]) -> None:
    print(f"\n{cfg.portals} portals × {cfg.tasks} tasks, {cfg.clients} client processes, {cfg.seconds:g} s a phase, "
          f"burst threshold {cfg.burst_threshold} events/s, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print("| operation | batch | calls | calls/s | Redis CPU | Redis µs/call | memory Δ B/call | net B/call "
          "| p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        lat = f"{r.p50:.2f} | {r.p99:.2f}" if r.p50 == r.p50 else "— | —"
        ops = max(1, r.ops)
        print(f"| {r.label} | {r.batch} | {r.ops:,} | {r.rate:,.0f} | {r.cpu / r.wall * 100:.0f} % | "
              f"{r.us_per_op:.1f} | {r.memory / ops:,.0f} | {r.network / ops:,.0f} | {lat} |")
    by = {r.phase: r for r in rows}
    per_claim_t, per_claim_d = means.get("claim", SYNC_BATCH), means.get("d_claim", DELIVERY_BATCH)
    deliveries = 1.5  # a synced task queues one or two deliveries here (every other task two)
    jobs = 1 / per_claim_t + deliveries / per_claim_d
    parts = {
        "schedule": by["schedule"].us_per_op,
        "claims": by["claim"].us_per_op * 1 + by["d_claim"].us_per_op * deliveries,  # µs a member claimed
        "RQ (enqueue + run)": (by["enqueue"].us_per_op + by["rq_run"].us_per_op) * jobs,
        "sync other round trips": by["sync_other"].us_per_op,
        "gcra": by["gcra"].us_per_op * REST_REQUESTS_PER_ALERT * deliveries,
        "commit_sync": by["commit"].us_per_op,
        "release": by["release"].us_per_op + by["d_release"].us_per_op * deliveries,
        "delivery job": by["d_job"].us_per_op * deliveries,
    }
    total = sum(parts.values())
    net = {name: by[name].network / max(1, by[name].ops) for name in by}
    net_event = (net["schedule"] + net["claim"] + net["d_claim"] * deliveries
                 + (net["enqueue"] + net["rq_run"]) * jobs + net["sync_other"]
                 + net["gcra"] * REST_REQUESTS_PER_ALERT * deliveries + net["commit"] + net["release"]
                 + (net["d_job"] + net["d_release"]) * deliveries)
    print("\nRedis CPU per event, worst case (every event its own sync, 1.5 deliveries, "
          f"{REST_REQUESTS_PER_ALERT} REST requests an alert; claims of {per_claim_t:.1f} tasks / "
          f"{per_claim_d:.1f} deliveries measured):")
    for name, us in parts.items():
        print(f"  {name:24s} {us:7.1f} µs  ({us / total * 100:4.1f} %)")
    print(f"  {'total':24s} {total:7.1f} µs; Redis network {net_event / 1000:,.1f} kB an event (in + out)")
    at_half = 0.5 / (total / 1e6)
    bare = by["bare_eval"]
    print(f"\nOne Redis at 50 % of a core: {at_half:,.0f} events/s (all-synced worst case) = portals at 1 event/s; "
          f"schedule alone (events that coalesce): {0.5 / (by['schedule'].us_per_op / 1e6):,.0f}/s.")
    print(f"Bare ceiling on this machine: EVALSHA `return 1` {bare.rate:,.0f}/s at {bare.us_per_op:.1f} µs/call "
          f"of Redis CPU ({bare.cpu / bare.wall * 100:.0f} % CPU).")
    commit, djob = by["commit"], by["d_job"]
    record, results, entry = means["delivery_bytes"], means["results_bytes"], means["trace_entry_bytes"]
    month = KEEP_FINISHED_SECONDS
    print(f"Kept (MEMORY USAGE, sampled): a sent delivery record {record:,.0f} B for 30 days; a task's results "
          f"hash {results:,.0f} B; a trace entry {entry:,.0f} B, at most {TRACE_MAXLEN:,} a portal "
          f"({TRACE_MAXLEN * entry / 1e6:,.1f} MB).")
    print(f"  so 1 alert/s sustained keeps {deliveries * record * month / 1e9:,.1f} GB of delivery records "
          f"(1.5 deliveries an alert); {cfg.portals:,} portals' full traces "
          f"{cfg.portals * TRACE_MAXLEN * entry / 1e9:,.1f} GB.")
    print(f"Memory: commit_sync {commit.memory / max(1, commit.ops):,.0f} B a synced task (3-result state + "
          f"{deliveries} delivery records), schedule {by['schedule'].memory / max(1, by['schedule'].ops):,.0f} B "
          f"an event (trace entry, watch, due member); delivery job {djob.memory / max(1, djob.ops):,.0f} B.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portals", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=50, help="distinct tasks a portal")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--seconds", type=float, default=8.0, help="longest a phase runs")
    parser.add_argument("--batch", type=int, default=16, help="calls a pipelined write (web, baselines)")
    parser.add_argument("--burst-threshold", type=int, default=int(_default("b24notify_burst_events_per_second")),
                        help="schedule.lua's burst threshold (the product's default; 0: leading edge always)")
    ns = parser.parse_args()
    prefix = f"bench-cap-{uuid.uuid4().hex[:8]}"
    cfg = Config(url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"), prefix=prefix, queue=f"{prefix}-q",
                 portals=ns.portals, tasks=ns.tasks, clients=ns.clients, seconds=ns.seconds, batch=ns.batch,
                 burst_threshold=ns.burst_threshold)
    try:
        rows, means = measure(cfg)
    finally:
        print(f"cleanup: {cleanup(cfg)} keys deleted", file=sys.stderr)
    report(cfg, rows, means)


if __name__ == "__main__":
    main()
