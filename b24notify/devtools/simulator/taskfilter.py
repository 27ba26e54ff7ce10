"""The ``filter`` of ``tasks.task.list`` (docs/protocol.md §4): ``ID``, ``STATUS``, ``CHANGED_DATE``… with
the prefixes ``!``, ``<``, ``<=``, ``>``, ``>=``. Dates go through ``strtotime()`` on the portal, so ISO
8601 with an offset works; a date without one is taken as UTC here. ``ACCOMPLICE`` and ``AUDITOR``
match a task that has any of the given users among its participants / observers."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from b24notify.devtools.simulator.errors import RestError
from b24notify.devtools.simulator.params import as_int, as_list
from b24notify.devtools.simulator.portal import Task

_ORDERING = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_FILTER_KEY = re.compile(r"^(>=|<=|!=|!|>|<|=)?([A-Z_]+)$")
_INT_FIELDS: dict[str, Callable[[Task], int]] = {
    "ID": lambda t: t.id,
    "STATUS": lambda t: t.status,
    "REAL_STATUS": lambda t: t.status,
    "GROUP_ID": lambda t: t.group_id,
    "RESPONSIBLE_ID": lambda t: t.responsible_id,
    "CREATED_BY": lambda t: t.created_by,
    "CLOSED_BY": lambda t: t.closed_by,
}
_PEOPLE_FIELDS: dict[str, Callable[[Task], tuple[int, ...]]] = {
    "ACCOMPLICE": lambda t: t.accomplices,
    "AUDITOR": lambda t: t.auditors,
}
_DATE_FIELDS: dict[str, Callable[[Task], datetime | None]] = {
    "CHANGED_DATE": lambda t: t.changed_date,
    "CREATED_DATE": lambda t: t.created_date,
    "CLOSED_DATE": lambda t: t.closed_date,
}


def _parse_date(value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise RestError("ERROR_ARGUMENT", f"Invalid date {value}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("", "="):
        return bool(left == right)
    if op in ("!", "!="):
        return bool(left != right)
    if left is None or right is None:
        return False
    return bool(_ORDERING[op](left, right))


def task_filters(raw: Mapping[str, Any]) -> list[Callable[[Task], bool]]:
    """Filters of tasks.task.list: ``ID``, ``STATUS``, ``CHANGED_DATE``… with ``!``, ``<``, ``<=``,
    ``>``, ``>=``; a list value means "one of" (or "none of" with ``!``). Unknown fields are ignored."""
    filters: list[Callable[[Task], bool]] = []
    for key, value in raw.items():
        match = _FILTER_KEY.match(str(key).upper())
        if not match:
            continue
        op, name = match[1] or "", match[2]
        getter: Callable[[Task], Any]
        values: list[Any]
        if name in _INT_FIELDS:
            getter = _INT_FIELDS[name]
            values = [as_int(v) for v in as_list(value)]
        elif name in _DATE_FIELDS:
            getter = _DATE_FIELDS[name]
            values = [_parse_date(v) for v in as_list(value)]
        elif name in _PEOPLE_FIELDS and op in ("", "=", "!", "!="):
            filters.append(_people_filter(_PEOPLE_FIELDS[name], {as_int(v) for v in as_list(value)},
                                          negate=op in ("!", "!=")))
            continue
        else:
            continue
        filters.append(_one_filter(getter, op, values))
    return filters


def _people_filter(
    getter: Callable[[Task], tuple[int, ...]], wanted: set[int | None], *, negate: bool
) -> Callable[[Task], bool]:
    return lambda task: bool(wanted.intersection(getter(task))) != negate


def _one_filter(getter: Callable[[Task], Any], op: str, values: list[Any]) -> Callable[[Task], bool]:
    if len(values) != 1 and op in ("", "=", "!", "!="):
        negate = op in ("!", "!=")
        return lambda task: (getter(task) in values) != negate
    target = values[0] if values else None
    return lambda task: _compare(op, getter(task), target)
