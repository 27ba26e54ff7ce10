"""``CRestUtil::ParseBatchQuery`` and PHP's casts, as pure functions (``batchquery.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from b24notify.devtools.simulator.batchquery import (
    BatchSections,
    EmbeddedArray,
    php_string,
    php_truthy,
    substitute_references,
)


def _sections() -> BatchSections:
    return BatchSections(
        result={"list": {"tasks": [{"id": "8001"}, {"id": "8002"}]}, "flag": True, "gone": None},
        next={"list": 50},
        total={"list": 51},
        time={"list": {"duration": 0.25}},
        error={"bad": {"error": "100", "error_description": "Invalid value"}},
    )


@pytest.mark.parametrize(("value", "truthy"), [
    ("", False), ("0", False), (0, False), (0.0, False), (False, False), (None, False), ([], False), ({}, False),
    ("N", True), ("false", True), ("0.0", True), (" 0", True), ("00", True), (2, True), (True, True), ([0], True),
])
def test_php_truthiness(value: Any, truthy: bool) -> None:
    assert php_truthy(value) is truthy


@pytest.mark.parametrize(("value", "text"), [
    (True, "1"), (False, ""), (None, ""), (7, "7"), (0.25, "0.25"), (0.1 + 0.2, "0.3"), (1e25, "1.0E+25"),
    (1.5e-5, "1.5E-5"), (1700000000.123456, "1700000000.1235"),
])
def test_php_string_casts(value: Any, text: str) -> None:
    assert php_string(value) == text


def test_a_whole_value_reference_is_the_value_itself() -> None:
    params = {"filter": {">ID": "$result[list][tasks][1][id]"}, "n": "$total[list]", "t": "$time[list]"}
    assert substitute_references(params, _sections()) == {
        "filter": {">ID": "8002"}, "n": 51, "t": {"duration": 0.25}}


def test_a_walk_past_the_end_of_a_page_keeps_the_page() -> None:
    params = {"filter": {">ID": "$result[list][tasks][49][id]"}}
    assert substitute_references(params, _sections()) == {"filter": {">ID": [{"id": "8001"}, {"id": "8002"}]}}


def test_the_match_runs_to_the_next_whitespace() -> None:
    params = {"a": "id=$result[list][tasks][0][id]-and-more x", "b": "$next[list] and $error[bad][error]"}
    assert substitute_references(params, _sections()) == {"a": "id=8001 x", "b": "50 and 100"}


def test_a_null_result_is_not_set_and_a_bare_name_is_no_reference() -> None:
    sections = _sections()
    params = {"a": "$result[gone]", "b": "$result", "c": "$result[flag]", "d": "$Result[flag]"}
    # isset() is false for null, so the walk stops at the section itself.
    assert substitute_references(params, sections) == {"a": sections.result, "b": "$result", "c": True, "d": None}


def test_a_reference_in_a_key_is_removed() -> None:
    assert substitute_references({"fields": {"A$result[list]": "1"}}, _sections()) == {"fields": {"A": "1"}}


def test_an_array_inside_a_longer_string_is_fatal() -> None:
    with pytest.raises(EmbeddedArray):
        substitute_references({"a": "ids: $result[list][tasks]"}, _sections())


def test_lists_keep_their_shape() -> None:
    assert substitute_references({"select": ["ID", "$next[list]"]}, _sections()) == {"select": ["ID", 50]}
