"""PHP-style form bodies: ``data[FIELDS_AFTER][ID]=123`` to nested dicts and lists, and back.

Bitrix24 posts its outbound events as ``application/x-www-form-urlencoded``, built with PHP's
``http_build_query`` (docs/protocol.md §1 "Transport"), so every value is a string and nesting lives
in the key names. The parser follows what PHP does when it fills ``$_POST``
(``php_register_variable_ex``) wherever that is sane, and is strict where PHP is merely lenient,
because the body is hostile input from the internet.

Parsing rules (key = the decoded field name):

- ``a`` is a plain key. ``a[b][c]`` descends into nested arrays. ``a[]`` appends at the next free
  integer index: one past the largest integer key so far, or 0 (PHP ≥ 8.3, which also counts
  negative keys). ``a[0]`` and ``a[00]`` are different keys, as in PHP, whose integer keys are
  exactly the canonical decimals (``0``, ``7``, ``-3``, not ``07`` or ``-0``).
- An array whose keys are exactly ``0, 1, …, n-1`` in insertion order (PHP's ``array_is_list``)
  becomes a ``list``; every other array becomes a ``dict`` with ``str`` keys. ``json_encode``
  draws the same line, so a form body and a JSON body of one event parse to the same shape. The
  top level is always a ``dict``. Values stay strings.
- Conflicts: later wins, both ways, like PHP. ``a=1&a[b]=2`` gives ``{"a": {"b": "2"}}`` and
  ``a[b]=2&a=1`` gives ``{"a": "1"}``; a replaced key keeps its first position.
- Malformed brackets: when the first ``[`` has no ``]`` after it (``a[b``, ``a]b[``) the whole
  key is a plain key, taken literally. (PHP also rewrites ``[``, space and ``.`` to ``_`` there;
  that mangling exists only to make PHP variable names, so we keep the key as sent.) Once a
  bracket group has matched, anything after the last well-formed group is ignored, like PHP:
  ``a[b]c`` and ``a[b][c`` both set ``a[b]``. A ``[`` inside a group is an ordinary character:
  ``a[b[c]`` sets key ``b[c`` of ``a``.
- Empty names are ignored, like PHP: an empty key, or a key with brackets and nothing before the
  first ``[`` (``[a]=1``). Bitrix24 never sends them and one stray field shouldn't cost a whole
  event, since failed deliveries are not retried (docs/protocol.md §1 "Retries").
- Limits raise :class:`FormError`: more than ``max_keys`` fields, more than ``max_depth`` bracket
  groups in one key (PHP silently drops such a field; we refuse the body), or an ``a[]`` append
  past the largest 64-bit index. Work is linear in the size of the input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes, urlencode

DEFAULT_MAX_DEPTH = 8
DEFAULT_MAX_KEYS = 1000
# PHP's own default max_input_nesting_level; also keeps the recursive list/dict conversion shallow.
DEPTH_CEILING = 64

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_CANONICAL_INT = re.compile(r"-?[1-9][0-9]{0,18}|0")
_INT_START = frozenset("-0123456789")
# Unescaped names and values, and names' bracket splits, by what was sent. An event's field names,
# and its escaped values (the endpoints in auth[...]), repeat in every delivery, so the web skips
# their percent-decoding and splitting, most of a parse. Bounded in entries and in the length of
# what is kept, and emptied when full: hostile bodies with ever-new names cost only the uncached speed.
_CACHE_SIZE = 1024
_CACHED_LENGTH = 256
_unescaped: dict[str, str] = {}
_PLANS = 256
_PLAN_FIELDS = 64
_plans: dict[tuple[tuple[str, ...], int], dict[str, Any]] = {}
_splits: dict[tuple[str, int], tuple[str, tuple[str | None, ...]]] = {}


class FormError(ValueError):
    """A form body we refuse to parse: over a limit, or not UTF-8."""


class _Array:
    """A PHP array while it is being built: an ordered map plus PHP's next free index."""

    __slots__ = ("items", "next_index")

    def __init__(self) -> None:
        self.items: dict[str, str | _Array] = {}
        self.next_index: int | None = None  # None: no integer key yet, so ``[]`` uses 0

    def put(self, key: str, value: str | _Array) -> None:
        if key[:1] in _INT_START and _CANONICAL_INT.fullmatch(key):
            index = int(key)
            if _INT64_MIN <= index <= _INT64_MAX and (self.next_index is None or index >= self.next_index):
                self.next_index = index + 1
        self.items[key] = value

    def append(self, value: str | _Array) -> None:
        index = 0 if self.next_index is None else self.next_index
        if index > _INT64_MAX:
            raise FormError("array index overflow in a [] key")
        self.items[str(index)] = value
        self.next_index = index + 1

    def child(self, key: str | None) -> _Array:
        """The array at ``key`` (``None``: a new one appended), replacing a scalar found there."""
        if key is None:
            created = _Array()
            self.append(created)
            return created
        found = self.items.get(key)
        if isinstance(found, _Array):
            return found
        created = _Array()
        self.put(key, created)
        return created


def _split_key(name: str, max_depth: int) -> tuple[str, list[str | None]]:
    """Split ``a[b][][c]`` into ``("a", ["b", None, "c"])``; ``None`` stands for ``[]``."""
    start = name.find("[")
    if start == -1 or name.find("]", start + 1) == -1:
        return name, []  # no brackets, or an unmatched first "[": a plain key
    segments: list[str | None] = []
    pos = start  # name[pos] == "["
    while True:
        close = name.find("]", pos + 1)
        if close == -1:
            break  # trailing unmatched group: ignored, like PHP
        if len(segments) == max_depth:
            raise FormError(f"key nested deeper than {max_depth} levels")
        segments.append(name[pos + 1 : close] or None)
        pos = close + 1
        if pos >= len(name) or name[pos] != "[":
            break  # anything after the last group is ignored, like PHP
    return name[:start], segments


def _split_key_cached(name: str, max_depth: int) -> tuple[str, tuple[str | None, ...]]:
    found = _splits.get((name, max_depth))
    if found is None:
        base, segments = _split_key(name, max_depth)  # a FormError is raised, never cached
        found = (base, tuple(segments))
        if len(name) <= _CACHED_LENGTH:
            if len(_splits) >= _CACHE_SIZE:
                _splits.clear()
            _splits[(name, max_depth)] = found
    return found


def _freeze_items(array: _Array) -> dict[str, Any]:
    return {key: _freeze(value) if isinstance(value, _Array) else value for key, value in array.items.items()}


def _freeze(array: _Array) -> list[Any] | dict[str, Any]:
    """Turn a built array into a list (keys 0..n-1 in order) or a dict. Depth ≤ DEPTH_CEILING."""
    converted = _freeze_items(array)
    if all(key == str(position) for position, key in enumerate(converted)):
        return list(converted.values())
    return converted


def _check_limits(max_depth: int, max_keys: int) -> None:
    if not 0 <= max_depth <= DEPTH_CEILING:
        raise ValueError(f"max_depth must be between 0 and {DEPTH_CEILING}, not {max_depth}")
    if max_keys < 1:
        raise ValueError(f"max_keys must be positive, not {max_keys}")


def parse_php_form(
    pairs: Iterable[tuple[str, str]],
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_keys: int = DEFAULT_MAX_KEYS,
) -> dict[str, Any]:
    """Nest decoded ``(name, value)`` pairs the way PHP fills ``$_POST``; see the module doc."""
    _check_limits(max_depth, max_keys)
    root = _Array()
    for count, (name, value) in enumerate(pairs, start=1):
        if count > max_keys:
            raise FormError(f"more than {max_keys} form fields")
        base, segments = _split_key_cached(name, max_depth)
        if not base:
            continue  # empty name: ignored, like PHP
        node: _Array = root
        key: str | None = base
        for segment in segments:
            node = node.child(key)
            key = segment
        if key is None:
            node.append(value)
        else:
            node.put(key, value)
    return _freeze_items(root)  # the top level stays a dict, whatever its keys


def parse_php_query(
    body: bytes | str,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_keys: int = DEFAULT_MAX_KEYS,
) -> dict[str, Any]:
    """Parse an ``application/x-www-form-urlencoded`` body into nested dicts and lists.

    The body, and every percent-encoded byte sequence in it, must be UTF-8.
    """
    _check_limits(max_depth, max_keys)
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise FormError("form body is not valid UTF-8") from None
        return _nest(_form_pairs(text, max_keys), max_depth, max_keys)
    return _nest(_text_pairs(body, max_keys), max_depth, max_keys)


def _nest(pairs: list[tuple[str, str]], max_depth: int, max_keys: int) -> dict[str, Any]:
    """:func:`parse_php_form`, from a plan per sequence of names. The shape of the result (which
    field wins, what is a list) depends on the names alone, and an event's names are the same in
    every delivery, so the plan (the shape, with each value's position in ``pairs`` at its leaves)
    is made once by parse_php_form itself and then filled. Over a limit raises every time."""
    names = tuple(name for name, _ in pairs)
    plan = _plans.get((names, max_depth))
    if plan is None:
        plan = parse_php_form(((name, i) for i, name in enumerate(names)),  # type: ignore[misc]
                              max_depth=max_depth, max_keys=max_keys)
        if len(names) <= _PLAN_FIELDS and sum(map(len, names)) <= _PLAN_FIELDS * _CACHED_LENGTH // 4:
            if len(_plans) >= _PLANS:
                _plans.clear()
            _plans[(names, max_depth)] = plan
    values = [value for _, value in pairs]
    return {key: values[at] if type(at) is int else _fill(at, values) for key, at in plan.items()}


def _fill(plan: dict[str, Any] | list[Any], values: list[str]) -> dict[str, Any] | list[Any]:
    if type(plan) is list:
        return [values[at] if type(at) is int else _fill(at, values) for at in plan]
    assert isinstance(plan, dict)
    return {key: values[at] if type(at) is int else _fill(at, values) for key, at in plan.items()}


def _text_pairs(text: str, max_keys: int) -> list[tuple[str, str]]:
    """``urllib.parse.parse_qsl`` with our limits: the reference the bytes path must equal."""
    try:
        return parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=max_keys,
        )
    except UnicodeDecodeError:
        raise FormError("percent-encoded form data is not valid UTF-8") from None
    except ValueError:  # parse_qsl's "Max number of fields exceeded"
        raise FormError(f"more than {max_keys} form fields") from None


def _form_pairs(text: str, max_keys: int) -> list[tuple[str, str]]:
    """What :func:`_text_pairs` gives for ``text``, a decoded body (so it has no lone surrogates),
    about three times faster on an event: escaped parts are unescaped as bytes and cached, the
    rest are kept as they are, with no call per field for the usual cases.

    Decoding each unescaped part as a whole equals parse_qsl's run-by-run decoding here: raw
    non-ASCII in a decoded body is whole characters, so an escaped run that is not valid UTF-8 on
    its own is not valid next to them either.
    """
    if text.count("&") + 1 > max_keys:  # parse_qsl counts empty fields too
        raise FormError(f"more than {max_keys} form fields")
    pairs: list[tuple[str, str]] = []
    cached = _unescaped.get
    plus = "+" in text
    try:
        for field in text.split("&"):
            if not field:
                continue
            name, _, value = field.partition("=")
            if "%" in name or (plus and "+" in name):
                name = cached(name) or _unescape(name)
            if "%" in value or (plus and "+" in value):
                value = cached(value) or _unescape(value)
            pairs.append((name, value))
    except UnicodeDecodeError:
        raise FormError("percent-encoded form data is not valid UTF-8") from None
    return pairs


def _unescape(part: str) -> str:
    """``+`` to space and ``%XY`` to its byte, the bytes read as UTF-8 (raises if they are not)."""
    text = unquote_to_bytes(part.encode("utf-8").replace(b"+", b" ")).decode("utf-8")
    if len(part) <= _CACHED_LENGTH:
        if len(_unescaped) >= _CACHE_SIZE:
            _unescaped.clear()
        _unescaped[part] = text
    return text


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise TypeError(f"cannot form-encode a key of type {type(key).__name__}")


def _scalar_text(value: object) -> str:
    # bool before int: bool is a subclass of int, and PHP sends true as "1", not "True".
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"cannot form-encode a value of type {type(value).__name__}")


def _encode_into(pairs: list[tuple[str, str]], name: str, value: object) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _encode_into(pairs, f"{name}[{_key_text(key)}]", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _encode_into(pairs, f"{name}[{index}]", item)
    else:
        pairs.append((name, _scalar_text(value)))


def encode_php_form(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Flatten nested data into ``(name, value)`` pairs with PHP ``http_build_query`` semantics.

    Mappings nest as ``a[b][c]``, lists and tuples as ``a[0]``; ``True``/``False`` become
    ``"1"``/``"0"``, ``None`` becomes ``""`` (what Bitrix24 sends, docs/protocol.md §1), ints and
    strings their text. Empty containers vanish, as in PHP. Other types raise ``TypeError``.
    Keys containing ``[`` or ``]`` do not survive a round trip, in PHP either.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        _encode_into(pairs, _key_text(key), value)
    return pairs


def encode_php_query(data: Mapping[str, Any]) -> str:
    """:func:`encode_php_form` as a URL-encoded body: ``data%5BFIELDS_AFTER%5D%5BID%5D=123&…``."""
    return urlencode(encode_php_form(data))
