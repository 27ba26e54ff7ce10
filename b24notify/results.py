"""Task results as the portal returns them (``tasks.task.result.list``), parsed into plain data.

Parsing is defensive: the portal sends ints as ints in REST answers, but older modules and the
``batch`` method have been seen to send strings, so every id goes through ``int()``. Whatever the
shape of one task's answer, parsing it raises ``MalformedResult`` and nothing else, so one odd
answer concerns its own task only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
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
    created_at: datetime  # always aware (see ``parse_time``)
    updated_at: datetime | None
    status: int
    text: str
    formatted_text: str
    files: tuple[int, ...] = field(default=())

    @property
    def is_closed(self) -> bool:
        return self.status == CLOSED


@dataclass(frozen=True)
class ResultList:
    """One task's results as read. ``complete`` is False when the portal offered more pages than
    we read (``portal_reads.MAX_RESULT_PAGES``): a result we did not see is unknown, not removed."""

    results: tuple[TaskResult, ...]
    complete: bool = True


def parse_time(value: Any, zone: tzinfo = UTC) -> datetime | None:
    """An ISO 8601 time from the portal, always aware.

    The portal writes an offset (docs/protocol.md §3, ``"2025-07-15T14:30:00+02:00"``). A time without
    one is the portal's wall clock: it is read in the portal's zone (``B24_PORTAL_TIMEZONE``), and
    never left naive, which would make comparing it with an aware time raise ``TypeError``.
    """
    if value in (None, ""):
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def parse_result(raw: Mapping[str, Any], zone: tzinfo = UTC) -> TaskResult:
    try:
        if not isinstance(raw, Mapping):
            raise MalformedResult(f"result row is a {type(raw).__name__}, not an object")
        created_at = parse_time(raw.get("createdAt"), zone)
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
            updated_at=parse_time(raw.get("updatedAt"), zone),
            status=CLOSED if int(raw.get("status") or 0) == CLOSED else OPEN,
            text=str(raw.get("text") or ""),
            formatted_text=str(raw.get("formattedText") or ""),
            files=tuple(int(f) for f in files),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, MalformedResult):
            raise
        raise MalformedResult(f"cannot parse task result: {exc}") from exc


def parse_results(raw: Any, zone: tzinfo = UTC) -> list[TaskResult]:
    """Parse the ``result`` member of ``tasks.task.result.list``.

    The list can come back as a JSON object keyed by index (a PHP array quirk) or as an empty
    string/false for "no results"; all of those mean a list. Anything else is malformed.
    """
    if raw in (None, "", False):
        return []
    if isinstance(raw, Mapping):
        rows: Iterable[Any] = raw.values()
    elif isinstance(raw, list):
        rows = raw
    else:
        raise MalformedResult(f"result list is a {type(raw).__name__}, not a list")
    return [parse_result(row, zone) for row in rows]
