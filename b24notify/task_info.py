"""What we need to know about a task to tell people about its results (``tasks.task.get``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


class MalformedTask(ValueError):
    """A ``tasks.task.get`` answer we cannot understand."""


@dataclass(frozen=True)
class TaskInfo:
    id: int
    title: str
    responsible_id: int
    group_id: int  # 0 when the task is in no group / project
    status: int
    created_by: int
    # The people of the task (issue 9): who waits for its results. Defaults keep task details
    # cached by an earlier version readable.
    accomplices: tuple[int, ...] = field(default=())
    auditors: tuple[int, ...] = field(default=())
    closed_by: int = 0  # who completed it, when the portal says

    def path(self) -> str:
        """The task's page on the portal (docs/protocol.md §9 "Link to a task in the portal UI")."""
        if self.group_id:
            return f"/workgroups/group/{self.group_id}/tasks/task/view/{self.id}/"
        return f"/company/personal/user/{self.responsible_id}/tasks/task/view/{self.id}/"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> TaskInfo:
        data = json.loads(raw)
        data["accomplices"] = tuple(data.get("accomplices") or ())
        data["auditors"] = tuple(data.get("auditors") or ())
        return cls(**data)


def _int(value: Any) -> int:
    return int(value) if value not in (None, "") else 0


def _ids(value: Any) -> tuple[int, ...]:
    """A list of user ids as the portal sends it (strings, sometimes a dict keyed by position)."""
    if isinstance(value, Mapping):
        value = list(value.values())
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(int(v) for v in value if str(v).strip().isdigit() and int(v) > 0))


def parse_task(raw: Any) -> TaskInfo:
    """Parse the ``result`` of ``tasks.task.get``: ``{"task": {...}}`` with camelCase fields."""
    if not isinstance(raw, Mapping):
        raise MalformedTask("tasks.task.get result is not an object")
    task = raw.get("task", raw)
    if not isinstance(task, Mapping):
        raise MalformedTask("tasks.task.get result has no task object")
    try:
        return TaskInfo(
            id=int(task["id"]),
            title=str(task.get("title") or ""),
            responsible_id=_int(task.get("responsibleId")),
            group_id=_int(task.get("groupId")),
            status=_int(task.get("status")),
            created_by=_int(task.get("createdBy")),
            accomplices=_ids(task.get("accomplices")),
            auditors=_ids(task.get("auditors")),
            closed_by=_int(task.get("closedBy")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedTask(f"cannot parse task: {exc}") from exc
