"""Task results as the portal returns them (``tasks.task.result.list``), parsed into plain data.

Parsing is defensive: the portal sends ints as ints in REST answers, but older modules and the
``batch`` method have been seen to send strings, so every id goes through ``int()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

OPEN = 0
CLOSED = 1


class MalformedResult(ValueError):
    """A result row the portal sent that we cannot understand."""


@dataclass(frozen=True)
class TaskResult:
    id: int
    task_id: int
    comment_id: int
    created_by: int
    created_at: datetime
    updated_at: datetime | None
    status: int
    text: str
    formatted_text: str
    files: tuple[int, ...] = field(default=())

    @property
    def is_closed(self) -> bool:
        return self.status == CLOSED


def _parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromisoformat(str(value))


def parse_result(raw: Mapping[str, Any]) -> TaskResult:
    try:
        created_at = _parse_time(raw.get("createdAt"))
        if created_at is None:
            raise MalformedResult("result without createdAt")
        files = raw.get("files") or ()
        if isinstance(files, Mapping):  # PHP arrays with holes arrive as JSON objects
            files = files.values()
        return TaskResult(
            id=int(raw["id"]),
            task_id=int(raw["taskId"]),
            comment_id=int(raw.get("commentId") or 0),
            created_by=int(raw.get("createdBy") or 0),
            created_at=created_at,
            updated_at=_parse_time(raw.get("updatedAt")),
            status=CLOSED if int(raw.get("status") or 0) == CLOSED else OPEN,
            text=str(raw.get("text") or ""),
            formatted_text=str(raw.get("formattedText") or ""),
            files=tuple(int(f) for f in files),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResult(f"cannot parse task result: {exc}") from exc


def parse_results(raw: Any) -> list[TaskResult]:
    """Parse the ``result`` member of ``tasks.task.result.list``.

    The list can come back as a JSON object keyed by index (a PHP array quirk) or as an empty
    string/false for "no results"; all of those mean a list.
    """
    if raw in (None, "", False):
        return []
    rows: Iterable[Any] = raw.values() if isinstance(raw, Mapping) else raw
    return [parse_result(row) for row in rows]
