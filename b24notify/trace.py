"""The trace: every step of a task, for "why did (or didn't) this alert go out?" (issue 10).

One Redis stream per portal (``keys.trace(portal)``), capped (``XADD … MAXLEN ~ TRACE_MAXLEN``)
and expiring (``TRACE_TTL_SECONDS`` after its last entry): a hard memory bound whatever the
traffic. Each entry is one step; no secret and no message body beyond what an alert shows: result
ids, recipient keys (``notify:u503``, ``chat:chat42``, ``email:u503``; a fixed e-mail address is
configuration), error reasons as the delivery record keeps them.

Who writes what:

- ``event`` / ``scheduled``: ``lua/schedule.lua``, in the same call that asks for the run (the
  web's event: no extra round trip; a sweep's find, ``sync --task``, an operator's unpark). A
  reconciliation poll writes no step of its own: a watched task is polled every 30 s to 30 min,
  and a step per poll would crowd everything else out of the cap. Its sync says ``trigger=poll``.
- ``sync``: the sync job, one pipeline for all its tasks (``workers/sync.py``). A poll's sync that
  found nothing and failed at nothing is not written (the same reason); every other run is.
- ``delivery``: each outcome of a delivery (sent, retry, deferred, dead, skipped), riding along
  in the delivery's own writes where there are some (``workers/deliver.py``).
- ``replay``: ``DeadLetters.replay`` (``deadletter.py``), with who replayed it.

Reading scans the portal's stream newest first, at most ``SCAN_LIMIT`` entries (the cap), in
pages: :class:`TraceLog` on a sync client (workers, CLI, or the console in a thread) and
:class:`AsyncTraceReader` with the same three read methods on the web's asyncio client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.client import Pipeline

from b24notify.keys import Keys, as_text, glob_escape

StepKind = Literal["event", "scheduled", "sync", "delivery", "replay"]
STEP_KINDS: tuple[str, ...] = get_args(StepKind)

# The bound: entries per portal (XADD MAXLEN ~ trims whole stream nodes, so up to one node's
# worth more, stream-node-max-entries = 100 by default) and how long a quiet portal's stream lives.
TRACE_MAXLEN = 20_000
TRACE_TTL_SECONDS = 7 * 86400
TRIM_SLACK = 100  # what MAXLEN ~ may leave above the cap (one stream node)
SCAN_LIMIT = TRACE_MAXLEN + TRIM_SLACK  # a read never looks at more than the whole capped stream
PAGE = 1000  # entries per XREVRANGE while scanning

MAX_IDS = 50  # result ids kept per field (a baseline of a task with hundreds of results)
MAX_TEXT = 300  # characters of a reason or a detail
ID_FIELDS = ("new", "closed", "edited", "removed", "baseline", "results")


@dataclass(frozen=True)
class TraceEntry:
    id: str  # the stream id ("1764460000000-0"): time-ordered
    at: datetime  # UTC
    portal: str
    task_id: int
    kind: StepKind
    # event: event name, coalesced ("0"/"1"); scheduled: trigger (sweep | manual), coalesced;
    # sync: trigger (event | poll | sweep | manual), requests, job (tasks in the job), outcome,
    # new/closed/edited/removed/baseline (comma-separated ids), queued, detail; delivery: delivery
    # id, recipient (target key), channel, attempt, outcome, error, message_id, results (ids);
    # replay: delivery id, recipient, channel, results, by.
    fields: dict[str, str] = field(default_factory=dict)

    def ids(self, name: str) -> list[int]:
        """The result ids in an id field (``new``, ``baseline``, ``results`` …)."""
        return [int(part) for part in self.fields.get(name, "").split(",") if part.isdigit()]


@dataclass(frozen=True)
class Step:
    """One step to write: what a writer hands to :func:`add_steps`."""

    task_id: int
    kind: StepKind
    fields: Mapping[str, str | int]


# -- building steps (pure) ------------------------------------------------------------------------


def id_list(ids: Iterable[int]) -> str:
    """``12,13,14``; past ``MAX_IDS`` the rest as a count: ``…,61,+240``."""
    values = [str(i) for i in ids]
    if len(values) > MAX_IDS:
        values = [*values[:MAX_IDS], f"+{len(values) - MAX_IDS}"]
    return ",".join(values)


def text(value: object) -> str:
    """One short line: a reason or a detail as a step keeps it."""
    line = " ".join(str(value).split())
    return line if len(line) <= MAX_TEXT else line[:MAX_TEXT - 1] + "…"


def sync_step(task_id: int, *, trigger: str, requests: int, job: int, outcome: str,
              changes: Mapping[str, Sequence[int]] | None = None, baseline: Sequence[int] = (),
              queued: int = 0, detail: str = "") -> Step:
    fields: dict[str, str | int] = {"trigger": trigger, "requests": requests, "job": job, "outcome": outcome}
    for kind, ids in (changes or {}).items():
        if ids:
            fields[kind] = id_list(ids)
    if baseline:
        fields["baseline"] = id_list(baseline)
    if queued:
        fields["queued"] = queued
    if detail:
        fields["detail"] = text(detail)
    return Step(task_id, "sync", fields)


def delivery_step(task_id: int, *, delivery: str, recipient: str, channel: str, attempt: int, outcome: str,
                  results: Sequence[int], error: str = "", message_id: str = "") -> Step:
    fields: dict[str, str | int] = {"delivery": delivery, "recipient": recipient, "channel": channel,
                                    "attempt": attempt, "outcome": outcome, "results": id_list(results)}
    if error:
        fields["error"] = text(error)
    if message_id:
        fields["message_id"] = message_id
    return Step(task_id, "delivery", fields)


def replay_step(task_id: int, *, delivery: str, recipient: str, channel: str, results: Sequence[int],
                by: str) -> Step:
    return Step(task_id, "replay", {"delivery": delivery, "recipient": recipient, "channel": channel,
                                    "results": id_list(results), "by": text(by)})


# -- writing ----------------------------------------------------------------------------------------


def add_steps(pipe: Pipeline, keys: Keys, portal: str, steps: Iterable[Step]) -> int:
    """Queue the steps on ``pipe`` (a pipeline the writer sends anyway), each an ``XADD`` to the
    portal's capped stream, and one ``EXPIRE``. Returns how many were queued."""
    key = keys.trace(portal)
    count = 0
    for step in steps:
        entry: dict[Any, Any] = {"task": step.task_id, "kind": step.kind}
        entry.update(step.fields)
        pipe.xadd(key, entry, maxlen=TRACE_MAXLEN, approximate=True)
        count += 1
    if count:
        pipe.expire(key, TRACE_TTL_SECONDS)
    return count


# -- reading ----------------------------------------------------------------------------------------


def parse_entry(portal: str, entry_id: bytes | str, raw: Mapping[Any, Any]) -> TraceEntry | None:
    """A stream entry as a TraceEntry; None for one that is not a step (never written by us)."""
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    kind = fields.pop("kind", "")
    task = fields.pop("task", "")
    if kind not in STEP_KINDS or not task.isdigit():
        return None
    ident = as_text(entry_id)
    millis = int(ident.split("-", 1)[0]) if ident.split("-", 1)[0].isdigit() else 0
    return TraceEntry(id=ident, at=datetime.fromtimestamp(millis / 1000, UTC), portal=portal, task_id=int(task),
                      kind=kind,  # type: ignore[arg-type]  # checked against STEP_KINDS above
                      fields=fields)


def names_result(entry: TraceEntry, result_id: int) -> bool:
    return entry.kind in ("sync", "delivery", "replay") and any(result_id in entry.ids(n) for n in ID_FIELDS)


def _order(entry: TraceEntry) -> tuple[int, int]:
    millis, _, seq = entry.id.partition("-")
    return int(millis or 0), int(seq or 0)


def newest_first(groups: Iterable[Sequence[TraceEntry]], limit: int) -> list[TraceEntry]:
    """Several portals' entries (each newest first) as one list, newest first."""
    merged = [entry for group in groups for entry in group]
    return sorted(merged, key=_order, reverse=True)[:limit]


def _page_bounds(scanned: int, scan: int) -> int:
    return min(PAGE, scan - scanned)


class TraceLog:
    """Read (and write) the trace on a sync client: workers, the CLI, or the console from a thread.

    The web writes its event steps inside ``schedule.lua`` (no extra round trip) and reads through
    :class:`AsyncTraceReader`."""

    def __init__(self, redis: Redis, keys: Keys, *, scan: int = SCAN_LIMIT) -> None:
        self.redis = redis
        self.keys = keys
        self.scan = scan

    def record(self, portal: str, steps: Iterable[Step]) -> None:
        """Write steps now (one round trip), for a writer with no pipeline at hand."""
        pipe = self.redis.pipeline(transaction=False)
        if add_steps(pipe, self.keys, portal, steps):
            pipe.execute()

    def timeline(self, portal: str, task_id: int, limit: int = 500) -> list[TraceEntry]:
        """The task's steps, newest first."""
        found: list[TraceEntry] = []
        for entry in self._entries(portal):
            if entry.task_id == task_id:
                found.append(entry)
                if len(found) >= limit:
                    break
        return found

    def find_result(self, portal: str, result_id: int) -> int | None:
        """The task a result belongs to, from the sync steps that name it."""
        for entry in self._entries(portal):
            if names_result(entry, result_id):
                return entry.task_id
        return None

    def recent_deliveries(self, portal: str | None = None, limit: int = 100) -> list[TraceEntry]:
        """The last delivery steps (all portals when None), newest first."""
        portals = [portal] if portal is not None else self.portals()
        groups = []
        for name in portals:
            group: list[TraceEntry] = []
            for entry in self._entries(name):
                if entry.kind == "delivery":
                    group.append(entry)
                    if len(group) >= limit:
                        break
            groups.append(group)
        return newest_first(groups, limit)

    def portals(self) -> list[str]:
        """The portals with a trace (a SCAN of the trace streams' keys)."""
        head = self.keys.trace_prefix()
        found = {as_text(key)[len(head):] for key in self.redis.scan_iter(match=f"{glob_escape(head)}*", count=1000,
                                                                         _type="stream")}
        return sorted(found)

    def _entries(self, portal: str) -> Iterator[TraceEntry]:
        key = self.keys.trace(portal)
        upper: str | None = "+"
        scanned = 0
        while upper is not None and scanned < self.scan:
            count = _page_bounds(scanned, self.scan)
            page: list[Any] = self.redis.xrevrange(key, max=upper, min="-", count=count) or []
            entries, upper = _read_page(portal, page, count)
            yield from entries
            scanned += len(page)


class AsyncTraceReader:
    """:class:`TraceLog`'s three reads on the web's asyncio client."""

    def __init__(self, redis: AsyncRedis, keys: Keys, *, scan: int = SCAN_LIMIT) -> None:
        self.redis = redis
        self.keys = keys
        self.scan = scan

    async def timeline(self, portal: str, task_id: int, limit: int = 500) -> list[TraceEntry]:
        """The task's steps, newest first."""
        found: list[TraceEntry] = []
        async for entry in self._entries(portal):
            if entry.task_id == task_id:
                found.append(entry)
                if len(found) >= limit:
                    break
        return found

    async def find_result(self, portal: str, result_id: int) -> int | None:
        """The task a result belongs to, from the sync steps that name it."""
        async for entry in self._entries(portal):
            if names_result(entry, result_id):
                return entry.task_id
        return None

    async def recent_deliveries(self, portal: str | None = None, limit: int = 100) -> list[TraceEntry]:
        """The last delivery steps (all portals when None), newest first."""
        portals = [portal] if portal is not None else await self.portals()
        groups = []
        for name in portals:
            group: list[TraceEntry] = []
            async for entry in self._entries(name):
                if entry.kind == "delivery":
                    group.append(entry)
                    if len(group) >= limit:
                        break
            groups.append(group)
        return newest_first(groups, limit)

    async def portals(self) -> list[str]:
        head = self.keys.trace_prefix()
        found = {as_text(key)[len(head):] async for key in self.redis.scan_iter(
            match=f"{glob_escape(head)}*", count=1000, _type="stream")}
        return sorted(found)

    async def _entries(self, portal: str) -> AsyncIterator[TraceEntry]:
        key = self.keys.trace(portal)
        upper: str | None = "+"
        scanned = 0
        while upper is not None and scanned < self.scan:
            count = _page_bounds(scanned, self.scan)
            page: list[Any] = await self.redis.xrevrange(key, max=upper, min="-", count=count) or []
            entries, upper = _read_page(portal, page, count)
            for entry in entries:
                yield entry
            scanned += len(page)




# -- the timeline as text (the CLI) -------------------------------------------------------------------


def format_timeline(entries: Iterable[TraceEntry]) -> list[str]:
    """One line a step, in the order given: ``2025-11-30 12:00:01.250Z  sync      synced …``."""
    return [f"{entry.at:%Y-%m-%d %H:%M:%S}.{entry.at.microsecond // 1000:03d}Z  {entry.kind:<9}  {describe(entry)}"
            for entry in entries]


def describe(entry: TraceEntry) -> str:
    """What one step says, in words."""
    f = entry.fields
    if entry.kind == "event":
        folded = "folded into a sync already asked for" if f.get("coalesced") == "1" else "sync asked for"
        return f"{f.get('event', '?')} received: {folded}"
    if entry.kind == "scheduled":
        folded = " (folded into one already asked for)" if f.get("coalesced") == "1" else ""
        return f"sync asked for by {f.get('trigger', '?')}{folded}"
    if entry.kind == "sync":
        job = f.get("job", "?")
        parts = [f"{f.get('outcome', '?')} (trigger {f.get('trigger', '?')}; requests={f.get('requests', '?')} "
                 f"(job of {job} task{'' if job == '1' else 's'}))"]
        parts += [f"{name} {f[name]}" for name in ("new", "closed", "edited", "removed", "baseline") if f.get(name)]
        if f.get("queued"):
            parts.append(f"queued {f['queued']} deliver{'y' if f['queued'] == '1' else 'ies'}")
        if f.get("outcome") == "synced" and not any(f.get(n) for n in ("new", "closed", "edited", "removed",
                                                                        "baseline")):
            parts.append("no changes")
        if f.get("detail"):
            parts.append(f"detail: {f['detail']}")
        return "; ".join(parts)
    if entry.kind == "delivery":
        line = (f"{f.get('outcome', '?')} via {f.get('channel', '?')} to {f.get('recipient', '?')}, attempt "
                f"{f.get('attempt', '?')}, results {f.get('results', '?')}")
        if f.get("error"):
            line += f"; error: {f['error']}"
        if f.get("message_id"):
            line += f"; message {f['message_id']}"
        return line + f" [{f.get('delivery', '?')}]"
    return (f"dead letter replayed by {f.get('by', '?')}: {f.get('channel', '?')} to {f.get('recipient', '?')}, "
            f"results {f.get('results', '?')} [{f.get('delivery', '?')}]")


def _read_page(portal: str, page: list[Any], count: int) -> tuple[list[TraceEntry], str | None]:
    """One XREVRANGE page: its readable entries, and where the next page starts (None: the end)."""
    entries = [e for e in (parse_entry(portal, entry_id, raw or {}) for entry_id, raw in page) if e is not None]
    return entries, ("(" + as_text(page[-1][0]) if len(page) == count else None)
