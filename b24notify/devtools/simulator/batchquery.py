"""What the portal does to a ``batch`` command before it runs it: ``CRestUtil::ParseBatchQuery``
(docs/protocol.md §5), and PHP's idea of a true ``halt``.

A command is ``method?query``. The query is parsed like a request of its own, then every value (and
key) is searched for references to the commands before it, by the regex
``/\\$(result|next|total|time|error)([^\\s]*)/i`` (BIZ ``classes/general/rest_util.php``,
``processBatchElement``):

- the name picks a section: ``$result[cmd]`` is that command's result, ``$next[cmd]`` and
  ``$total[cmd]`` its paging numbers, ``$time[cmd]`` its time object, ``$error[cmd]`` its
  ``{error, error_description}``. A failed command has no result, next, total or time;
- every ``[...]`` group after the name is one step into the value, as long as PHP's ``isset`` holds.
  A step that finds nothing stops the walk *where it is*: ``$result[a][tasks][49][id]`` over a page
  of 20 tasks gives the whole ``tasks`` list. The match runs to the next whitespace, so trailing
  text after the last group is swallowed too;
- a value that is exactly one reference becomes the referenced value itself (a number, a list…);
  a reference inside a longer string is replaced by its PHP string form (``true`` → ``1``,
  ``null``/``false`` → empty). An array there is a TypeError in PHP 8's ``str_replace``: the batch
  dies with a 500 (inference: the error escapes ``CRestServer::process``, which catches only
  ``Exception``);
- a name of other case (``$RESULT[a]``) matches the regex but names no section: it becomes empty;
- keys are searched with an empty name list (a quirk of the source): any ``$…[…]`` in a key
  is removed.

``methodsBatch`` reads ``halt`` as ``(bool)$arQuery['HALT']``: PHP truthiness, where every string
but ``""`` and ``"0"`` is true (``"N"`` and ``"false"`` too).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SECTIONS = ("result", "next", "total", "time", "error")
# ``[^\s]`` of PCRE without /u: the ASCII whitespace of the C locale, not Unicode's.
_NOT_SPACE = r"[^\t\n\x0b\f\r ]"
_VALUE_REFERENCE = re.compile(r"\$(" + "|".join(SECTIONS) + r")(" + _NOT_SPACE + "*)", re.IGNORECASE)
_KEY_REFERENCE = re.compile(r"\$()(" + _NOT_SPACE + "*)")
_PATH_STEP = re.compile(r"\[([^\]]+)\]")
_PHP_INT = re.compile(r"-?[1-9][0-9]*|0")  # an array key PHP stores as an integer
_NUMERIC_OFFSET = re.compile(r"[ \t\n\r\x0b\f]*[+-]?[0-9]+[ \t\n\r\x0b\f]*")


class EmbeddedArray(Exception):
    """A reference to an array inside a longer string: PHP 8 throws, the batch request dies."""


@dataclass
class BatchSections:
    """``$arResult`` of ``methodsBatch``: what the commands so far left, by section and key."""

    result: dict[str, Any] = field(default_factory=dict)
    next: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    time: dict[str, Any] = field(default_factory=dict)
    error: dict[str, dict[str, str]] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any] | None:
        """The section a reference names, matched case-sensitively as PHP's array lookup is."""
        return getattr(self, name) if name in SECTIONS else None


def php_truthy(value: Any) -> bool:
    """``(bool)$value``: false for ``false``, ``0``, ``0.0``, ``""``, ``"0"``, ``null`` and an
    empty array; true for everything else."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, list | dict):
        return bool(value)
    return True


def php_string(value: Any) -> str:
    """The string PHP makes of a scalar where ``str_replace`` needs one."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _php_float(value)
    if isinstance(value, str):
        return value
    raise EmbeddedArray("str_replace(): Argument #2 ($replace) must be of type string")


def _php_float(value: float) -> str:
    # PHP 8 casts floats with ``precision`` = 14 significant digits ("%.14G", mantissa keeps ".0").
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    text = format(value, ".14G")
    if "E" in text:
        mantissa, exponent = text.split("E")
        if "." not in mantissa:
            mantissa += ".0"
        power = int(exponent)
        text = f"{mantissa}E{'+' if power >= 0 else '-'}{abs(power)}"  # "1.5E-5", not "1.5E-05"
    return text


def _step(value: Any, key: str) -> tuple[bool, Any]:
    """``isset($value[$key])`` and the value found there."""
    if isinstance(value, Mapping):
        found = value.get(key)
        return found is not None, found
    if isinstance(value, list):
        if _PHP_INT.fullmatch(key) and 0 <= int(key) < len(value):
            return value[int(key)] is not None, value[int(key)]
        return False, None
    if isinstance(value, str) and _NUMERIC_OFFSET.fullmatch(key):
        offset = int(key.strip())
        if -len(value) <= offset < len(value):
            return True, value[offset]
    return False, None


def _resolve(sections: BatchSections | None, name: str, path: str) -> Any:
    value: Any = sections.section(name) if sections is not None else None
    for key in _PATH_STEP.findall(path):
        present, found = _step(value, key)
        if not present:
            break  # stop where the walk is, like the source's ``break``
        value = found
    return value


def _substitute(text: str, sections: BatchSections | None, pattern: re.Pattern[str]) -> Any:
    query: Any = text
    for match in pattern.finditer(text):
        if not _PATH_STEP.search(match[2]):
            continue  # "$result" with no [...] is left as it is
        value = _resolve(sections, match[1], match[2])
        if isinstance(query, str) and match[0] == query:
            query = value
        elif isinstance(query, str):
            query = query.replace(match[0], php_string(value))
    return query


def _key(key: str) -> str:
    # Keys are searched with an empty name list: ``$arResult['']`` is null, so a key's reference
    # is replaced by the empty string.
    return php_string(_substitute(key, None, _KEY_REFERENCE))


def substitute_references(params: Any, sections: BatchSections) -> Any:
    """The command's parsed params with every reference replaced (``processBatchStructure``).
    Raises EmbeddedArray where PHP 8 would throw."""
    if isinstance(params, list):
        # Integer keys never hold a "$"; only the values can change.
        return [substitute_references(value, sections) for value in params]
    if isinstance(params, Mapping):
        return {_key(str(key)): substitute_references(value, sections) for key, value in params.items()}
    if isinstance(params, str):
        return _substitute(params, sections, _VALUE_REFERENCE)
    return params
