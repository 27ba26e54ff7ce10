"""Reading REST params the way the portal does: names are matched loosely (``taskId`` and ``TASKID``
both occur), and values may be JSON types or the strings of a form or query string."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from b24notify.devtools.simulator.errors import RestError

Params = Mapping[str, Any]


def param(params: Params, name: str, default: Any = None) -> Any:
    """Look a parameter up by name, then case-insensitively (``taskId``/``TASKID`` both occur)."""
    if name in params:
        return params[name]
    lowered = name.lower()
    for key, value in params.items():
        if str(key).lower() == lowered:
            return value
    return default


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def as_mapping(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, list):  # a PHP array that happened to be a list
        return {str(i): item for i, item in enumerate(value)}
    return {}


def as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, list):
        return value
    return [value]


def flag(value: Any) -> bool:
    return value is True or (isinstance(value, int | str) and str(value).strip().upper() in ("Y", "1", "TRUE"))


def type_error(value: Any, name: str) -> RestError:
    return RestError("100", f"Invalid value {value} to match with parameter {{{name}}}. "
                            "Should be value of type int.")


def required_int(params: Params, name: str, *, error_name: str | None = None) -> int:
    value = param(params, name)
    number = as_int(value)
    if number is None:
        raise type_error(value, error_name or name)
    return number


def int_field(fields: Params, name: str, default: int) -> int:
    value = param(fields, name)
    if value is None or value == "":
        return default
    number = as_int(value)
    if number is None:
        raise type_error(value, name)
    return number


