"""The diff: what changed between the results we stored and the results the portal has now.

Pure functions over plain data. Results are keyed on the result ``id`` and never on ``commentId``:
a comment pinned again after its result was removed comes back with a new ``id`` and the same
``commentId``, and in the new task card every ``commentId`` is 0 (PROTOCOL.md §3).
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
    revision: str = ""  # distinguishes two edits of one result; empty for the other kinds

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


def diff_results(
    previous: Mapping[int, StoredResult] | None,
    current: Sequence[TaskResult],
    connected_at: datetime,
) -> ResultDiff:
    """Compare stored state with the portal's list.

    ``previous is None`` means we have never seen this task: results created before the portal was
    first connected (``connected_at``) form a silent baseline, later ones are new. A result first
    seen already closed is NEW (rendered as closed), never NEW and CLOSED at once.
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
            changes.append(ResultChange(ChangeKind.EDITED, result.id, result, revision=now.fingerprint))
    for result_id in sorted(set(previous) - set(state)):
        changes.append(ResultChange(ChangeKind.REMOVED, result_id, None))
    return ResultDiff(tuple(changes), tuple(baseline), state)
