"""The diff: what changed between the results we stored and the results the portal has now.

Pure functions over plain data. Results are keyed on the result ``id`` and never on ``commentId``:
a comment pinned again after its result was removed comes back with a new ``id`` and the same
``commentId``, and in the new task card every ``commentId`` is 0 (docs/protocol.md §3).

A change's key names its notification for good (one per key and channel, remembered 30 days), so a
key must never come back for a later change: an edit is keyed on the result's ``updatedAt`` plus
its new content, not on the content alone (edits A→B→A→B would repeat the key of the first B).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from b24notify.results import TaskResult


class ChangeKind(StrEnum):
    NEW = "new"
    CLOSED = "closed"
    EDITED = "edited"
    REMOVED = "removed"


@dataclass(frozen=True)
class StoredResult:
    """What we remember of one result between two fetches."""

    id: int
    status: int
    fingerprint: str

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "status": self.status, "fp": self.fingerprint})

    @classmethod
    def from_json(cls, raw: str | bytes) -> StoredResult:
        data = json.loads(raw)
        return cls(id=int(data["id"]), status=int(data["status"]), fingerprint=str(data["fp"]))


@dataclass(frozen=True)
class ResultChange:
    kind: ChangeKind
    result_id: int
    result: TaskResult | None  # None only for REMOVED: the portal no longer has it
    revision: str = ""  # distinguishes two edits of one result (``edit_revision``); empty for the other kinds

    @property
    def key(self) -> str:
        """Stable identity of this change: one notification per (key, channel), ever."""
        suffix = f":{self.revision}" if self.revision else ""
        return f"{self.result_id}:{self.kind.value}{suffix}"


@dataclass(frozen=True)
class ResultDiff:
    changes: tuple[ResultChange, ...]
    baseline: tuple[int, ...]  # ids recorded silently on first sight of the task
    state: Mapping[int, StoredResult] = field(default_factory=dict)  # the new state to store

    @property
    def is_empty(self) -> bool:
        return not self.changes and not self.baseline


def fingerprint(result: TaskResult) -> str:
    """A short digest of what a person would call the content of a result."""
    payload = json.dumps([result.text, list(result.files)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def snapshot(result: TaskResult) -> StoredResult:
    return StoredResult(id=result.id, status=result.status, fingerprint=fingerprint(result))


def edit_revision(result: TaskResult) -> str:
    """What makes one edit of a result unlike every other: when the portal says it was updated
    (to the second, as a unix time) plus the content it has now.

    Keys made before this rule were the fingerprint alone (``23:edited:{fp}``); they stay valid for
    the deliveries stored under them, and no new change can produce one again. A result without an
    ``updatedAt`` (never seen; every documented row has one) falls back to the fingerprint alone.
    """
    content = fingerprint(result)
    if result.updated_at is None:
        return content
    return f"{int(result.updated_at.timestamp())}.{content}"


def diff_results(
    previous: Mapping[int, StoredResult] | None,
    current: Sequence[TaskResult],
    connected_at: datetime,
    *,
    complete: bool = True,
) -> ResultDiff:
    """Compare stored state with the portal's list.

    ``previous is None`` means we have never seen this task: results created before the portal was
    first connected (``connected_at``) form a silent baseline, later ones are new. A result first
    seen already closed is NEW (rendered as closed), never NEW and CLOSED at once.

    ``complete=False`` says the list is cut short (more pages than we read): a stored result
    missing from it is unknown rather than removed, and its stored state is kept.
    """
    # The portal stamps results to the second: a result from the very second we connected is new.
    cutoff = connected_at.replace(microsecond=0)
    state = {r.id: snapshot(r) for r in current}
    changes: list[ResultChange] = []
    baseline: list[int] = []

    if previous is None:
        for result in sorted(current, key=lambda r: r.id):
            if result.created_at < cutoff:
                baseline.append(result.id)
            else:
                changes.append(ResultChange(ChangeKind.NEW, result.id, result))
        return ResultDiff(tuple(changes), tuple(baseline), state)

    for result in sorted(current, key=lambda r: r.id):
        before = previous.get(result.id)
        now = state[result.id]
        if before is None:
            changes.append(ResultChange(ChangeKind.NEW, result.id, result))
            continue
        if before.status != now.status and result.is_closed:
            changes.append(ResultChange(ChangeKind.CLOSED, result.id, result))
        if before.fingerprint != now.fingerprint:
            changes.append(ResultChange(ChangeKind.EDITED, result.id, result, revision=edit_revision(result)))
    unseen = sorted(set(previous) - set(state))
    if not complete:
        return ResultDiff(tuple(changes), tuple(baseline), {**{rid: previous[rid] for rid in unseen}, **state})
    for result_id in unseen:
        changes.append(ResultChange(ChangeKind.REMOVED, result_id, None))
    return ResultDiff(tuple(changes), tuple(baseline), state)
