"""PHP-style form bodies: what Bitrix24 posts (docs/protocol.md §1) and what hostile senders might."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b24notify.phpform import (
    FormError,
    encode_php_form,
    encode_php_query,
    parse_php_form,
    parse_php_query,
)

WEBHOOK_COMMENT_BODY = (
    "event=ONTASKCOMMENTADD&event_handler_id=975"
    "&data%5BFIELDS_BEFORE%5D=undefined"
    "&data%5BFIELDS_AFTER%5D%5BID%5D=123"
    "&data%5BFIELDS_AFTER%5D%5BTASK_ID%5D=555"
    "&data%5BIS_ACCESSIBLE_BEFORE%5D=N"
    "&data%5BIS_ACCESSIBLE_AFTER%5D=undefined"
    "&ts=1466439714"
    "&auth%5Bdomain%5D=some-domain.bitrix24.com"
    "&auth%5Bclient_endpoint%5D=https%3A%2F%2Fsome-domain.bitrix24.com%2Frest%2F"
    "&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F"
    "&auth%5Bmember_id%5D=a223c6b3710f85df22e9377d6c4f7553"
    "&auth%5Bapplication_token%5D=jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
)


def q(body: str, **limits: int) -> dict[str, Any]:
    return parse_php_query(body, **limits)


# --- what the portal sends ---------------------------------------------------------------------


def test_webhook_comment_body_from_protocol_parses_to_nested_strings() -> None:
    assert parse_php_query(WEBHOOK_COMMENT_BODY.encode()) == {
        "event": "ONTASKCOMMENTADD",
        "event_handler_id": "975",
        "data": {
            "FIELDS_BEFORE": "undefined",
            "FIELDS_AFTER": {"ID": "123", "TASK_ID": "555"},
            "IS_ACCESSIBLE_BEFORE": "N",
            "IS_ACCESSIBLE_AFTER": "undefined",
        },
        "ts": "1466439714",
        "auth": {
            "domain": "some-domain.bitrix24.com",
            "client_endpoint": "https://some-domain.bitrix24.com/rest/",
            "server_endpoint": "https://oauth.bitrix.info/rest/",
            "member_id": "a223c6b3710f85df22e9377d6c4f7553",
            "application_token": "jvh9y1ulvt2m6k5or90v9mg8nn32ozas",
        },
    }


def test_encoder_reproduces_the_wire_form_from_protocol() -> None:
    body = encode_php_query(
        {
            "event": "ONTASKCOMMENTADD",
            "event_handler_id": 975,
            "data": {
                "FIELDS_BEFORE": "undefined",
                "FIELDS_AFTER": {"ID": 123, "TASK_ID": 555},
                "IS_ACCESSIBLE_BEFORE": "N",
                "IS_ACCESSIBLE_AFTER": "undefined",
            },
            "ts": "1466439714",
            "auth": {
                "domain": "some-domain.bitrix24.com",
                "client_endpoint": "https://some-domain.bitrix24.com/rest/",
                "server_endpoint": "https://oauth.bitrix.info/rest/",
                "member_id": "a223c6b3710f85df22e9377d6c4f7553",
                "application_token": "jvh9y1ulvt2m6k5or90v9mg8nn32ozas",
            },
        }
    )
    assert body == WEBHOOK_COMMENT_BODY


def test_plus_and_percent_escapes_are_decoded() -> None:
    assert q("a=x+y%26z&b%5Bc+d%5D=%E2%9C%93") == {"a": "x y&z", "b": {"c d": "✓"}}


def test_key_without_equals_sign_is_an_empty_string() -> None:
    assert q("a&b=") == {"a": "", "b": ""}


# --- arrays and lists ----------------------------------------------------------------------------


def test_empty_brackets_append_to_a_list() -> None:
    assert q("a[]=x&a[]=y") == {"a": ["x", "y"]}


def test_explicit_indices_in_order_make_a_list() -> None:
    assert q("a[0]=x&a[1]=y") == {"a": ["x", "y"]}


def test_indices_out_of_order_or_with_holes_make_a_dict() -> None:
    assert q("a[1]=x&a[0]=y") == {"a": {"1": "x", "0": "y"}}
    assert q("a[0]=x&a[2]=y") == {"a": {"0": "x", "2": "y"}}


def test_append_continues_after_the_largest_integer_key() -> None:
    assert q("a[5]=x&a[]=y&a[b]=z&a[]=w") == {"a": {"5": "x", "6": "y", "b": "z", "7": "w"}}


def test_append_after_a_negative_key_follows_php_8_3() -> None:
    assert q("a[-5]=x&a[]=y") == {"a": {"-5": "x", "-4": "y"}}


def test_non_canonical_integer_keys_are_strings_like_in_php() -> None:
    assert q("a[00]=x&a[0]=y&a[-0]=z&a[]=w") == {"a": {"00": "x", "0": "y", "-0": "z", "1": "w"}}


def test_append_past_the_largest_64_bit_index_is_refused() -> None:
    assert q("a[9223372036854775807]=x") == {"a": {"9223372036854775807": "x"}}
    with pytest.raises(FormError, match="overflow"):
        q("a[9223372036854775807]=x&a[]=y")


def test_nested_appends_make_a_new_array_each_time() -> None:
    assert q("x[][k]=1&x[][k]=2") == {"x": [{"k": "1"}, {"k": "2"}]}


def test_top_level_stays_a_dict_even_with_integer_keys() -> None:
    assert q("0=a&1=b") == {"0": "a", "1": "b"}


# --- conflicts -----------------------------------------------------------------------------------


def test_later_scalar_replaces_earlier_scalar() -> None:
    assert q("a=1&a=2") == {"a": "2"}


def test_later_array_replaces_earlier_scalar() -> None:
    assert q("a=1&a[b]=2") == {"a": {"b": "2"}}


def test_later_scalar_replaces_earlier_array_and_keeps_its_position() -> None:
    assert list(q("a[b]=2&c=3&a=1").items()) == [("a", "1"), ("c", "3")]


# --- malformed keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("a[b=1", {"a[b": "1"}),
        ("a]b[=1", {"a]b[": "1"}),
        ("a]b=1", {"a]b": "1"}),
        ("a[[[=1", {"a[[[": "1"}),
        ("a.b c=1", {"a.b c": "1"}),
    ],
)
def test_key_with_unmatched_first_bracket_is_taken_literally(body: str, expected: dict[str, str]) -> None:
    assert q(body) == expected


@pytest.mark.parametrize("body", ["a[b]c=1", "a[b][c=1", "a[b]]=1", "a[b]x[c]=1"])
def test_text_after_the_last_bracket_group_is_ignored_like_php(body: str) -> None:
    assert q(body) == {"a": {"b": "1"}}


def test_opening_bracket_inside_a_group_is_part_of_the_key() -> None:
    assert q("a[b[c]=1") == {"a": {"b[c": "1"}}


@pytest.mark.parametrize("body", ["=x", "[a]=1", "[]=1", "[a][b]=1"])
def test_empty_names_are_ignored(body: str) -> None:
    assert q(body + "&ok=1") == {"ok": "1"}


# --- limits --------------------------------------------------------------------------------------


def test_nesting_up_to_max_depth_is_accepted() -> None:
    assert q("a[1][2][3]=v", max_depth=3) == {"a": {"1": {"2": {"3": "v"}}}}


def test_nesting_beyond_max_depth_is_refused() -> None:
    with pytest.raises(FormError, match="deeper than 3"):
        q("a[1][2][3][4]=v", max_depth=3)


def test_max_depth_zero_allows_only_plain_keys() -> None:
    assert q("a=1&b[c=2", max_depth=0) == {"a": "1", "b[c": "2"}
    with pytest.raises(FormError):
        q("a[b]=1", max_depth=0)


def test_more_fields_than_max_keys_is_refused() -> None:
    assert len(q("&".join(f"k{i}=v" for i in range(10)), max_keys=10)) == 10
    with pytest.raises(FormError, match="more than 10"):
        q("&".join(f"k{i}=v" for i in range(11)), max_keys=10)


def test_max_keys_also_bounds_the_pair_iterable() -> None:
    def endless() -> Any:
        while True:
            yield ("a[]", "x")

    with pytest.raises(FormError, match="more than 5"):
        parse_php_form(endless(), max_keys=5)


@pytest.mark.parametrize("limits", [{"max_depth": -1}, {"max_depth": 65}, {"max_keys": 0}])
def test_nonsense_limits_are_a_programming_error(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError) as raised:
        q("a=1", **limits)
    assert not isinstance(raised.value, FormError)


def test_invalid_utf8_body_is_refused() -> None:
    with pytest.raises(FormError, match="UTF-8"):
        parse_php_query(b"a=\xff\xfe")


def test_invalid_utf8_in_percent_escapes_is_refused() -> None:
    with pytest.raises(FormError, match="UTF-8"):
        parse_php_query(b"a=%FF")


def _elapsed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def test_many_appends_take_linear_time() -> None:
    # A quadratic next-index search would take minutes here.
    n = 100_000
    pairs = [("a[]", "x")] * n
    assert _elapsed(lambda: parse_php_form(pairs, max_keys=n)) < 5


def test_deep_key_is_refused_quickly() -> None:
    key = "a" + "[x]" * 300_000
    started = time.perf_counter()
    with pytest.raises(FormError):
        parse_php_form([(key, "v")] * 1000, max_keys=1000)
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("key", ["a" + "[" * 300_000, "a" + "]" * 300_000, "a[" + "[" * 300_000 + "]"])
def test_long_bracket_runs_take_linear_time(key: str) -> None:
    assert _elapsed(lambda: parse_php_form([(key, "v")] * 20)) < 2


def test_maximal_body_within_limits_is_fast() -> None:
    body = "&".join(f"k{i}[a][b][c][d][e][f][g][h]=v" for i in range(1000))
    assert _elapsed(lambda: parse_php_query(body)) < 1


# --- the encoder ---------------------------------------------------------------------------------


def test_encoder_follows_http_build_query() -> None:
    assert encode_php_form(
        {"a": {"b": {"c": "x"}}, "l": ["p", "q"], "t": True, "f": False, "n": None, "i": 7, "m": {3: "k"}}
    ) == [
        ("a[b][c]", "x"),
        ("l[0]", "p"),
        ("l[1]", "q"),
        ("t", "1"),
        ("f", "0"),
        ("n", ""),
        ("i", "7"),
        ("m[3]", "k"),
    ]


def test_encoder_drops_empty_containers() -> None:
    assert encode_php_form({"a": {}, "b": [], "c": {"d": {}}, "e": "x"}) == [("e", "x")]


@pytest.mark.parametrize("value", [1.5, b"x", object(), {1.5: "x"}])
def test_encoder_refuses_types_php_would_not_send_us(value: object) -> None:
    with pytest.raises(TypeError):
        encode_php_form({"a": value})


# --- properties ----------------------------------------------------------------------------------

# Keys without brackets: a bracket in a key cannot survive a round trip, in PHP either.
_keys = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="[]"), min_size=1, max_size=8)
_numeric_keys = st.integers(0, 3).map(str)
_scalars = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)
_nested = st.recursive(
    _scalars,
    lambda inner: st.dictionaries(_keys | _numeric_keys, inner, max_size=4) | st.lists(inner, max_size=4),
    max_leaves=20,
)
_documents = st.dictionaries(_keys, _nested, max_size=5)

_DROPPED = object()


def _normalized(value: Any) -> Any:
    """What a round trip through PHP yields: empty containers gone, 0..n-1 dicts as lists."""
    if not isinstance(value, Mapping | list):
        return value
    items = value.items() if isinstance(value, Mapping) else enumerate(value)
    out = {str(k): n for k, v in items if (n := _normalized(v)) is not _DROPPED}
    if not out:
        return _DROPPED
    if list(out) == [str(i) for i in range(len(out))]:
        return list(out.values())
    return out


@given(_documents)
def test_parse_inverts_encode_up_to_php_normalization(document: dict[str, Any]) -> None:
    expected = {k: n for k, v in document.items() if (n := _normalized(v)) is not _DROPPED}
    assert parse_php_query(encode_php_query(document), max_depth=64) == expected
    assert parse_php_form(encode_php_form(document), max_depth=64) == expected


_key_text = st.text(st.sampled_from("ab0-[] .%&=+") | st.characters(), max_size=30)


@given(
    st.lists(st.tuples(_key_text, st.text(max_size=5)), max_size=30),
    st.integers(0, 4),
    st.integers(1, 20),
)
def test_arbitrary_keys_raise_nothing_but_form_error(
    pairs: list[tuple[str, str]], max_depth: int, max_keys: int
) -> None:
    try:
        result = parse_php_form(pairs, max_depth=max_depth, max_keys=max_keys)
    except FormError:
        return
    assert isinstance(result, dict)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200) | st.text(st.sampled_from("ab0[]&=%+F;") | st.characters(), max_size=200))
def test_arbitrary_bodies_raise_nothing_but_form_error(body: bytes | str) -> None:
    with contextlib.suppress(FormError):
        parse_php_query(body, max_depth=3, max_keys=10)


@given(st.integers(0, 12), st.integers(0, 12))
def test_depth_is_bounded_exactly_at_max_depth(depth: int, max_depth: int) -> None:
    body = "a" + "[k]" * depth + "=v"
    if depth > max_depth:
        with pytest.raises(FormError):
            q(body, max_depth=max_depth)
    else:
        result: Any = q(body, max_depth=max_depth)["a"]
        for _ in range(depth):
            result = result["k"]
        assert result == "v"


# --- the web's fast path (bytes: unescaped as bytes, names and shapes from caches) ---------------


def _reference(body: bytes, max_depth: int, max_keys: int) -> dict[str, Any] | str:
    """parse_qsl + parse_php_form, as the parser was before the fast path: a result or an error."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "form body is not valid UTF-8"
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=max_keys)
    except UnicodeDecodeError:
        return "percent-encoded form data is not valid UTF-8"
    except ValueError:
        return f"more than {max_keys} form fields"
    try:
        return parse_php_form(pairs, max_depth=max_depth, max_keys=max_keys)
    except FormError as exc:
        return str(exc)


def _fast(body: bytes, max_depth: int, max_keys: int) -> dict[str, Any] | str:
    try:
        return parse_php_query(body, max_depth=max_depth, max_keys=max_keys)
    except FormError as exc:
        return str(exc)


_escapes = st.sampled_from(["%5B", "%5D", "%26", "%3D", "%2B", "%25", "%C3%A9", "%E2%82", "%FF", "%", "%G1", "+"])
_body_parts = st.lists(st.sampled_from(["a", "b", "0", "1", "-", "[", "]", "[]", "&", "=", "é", "\x00"]) | _escapes,
                       max_size=40)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(_body_parts | st.binary(max_size=80).map(lambda b: [b]), st.integers(0, 4), st.integers(1, 12))
def test_fast_path_gives_what_parse_qsl_and_parse_php_form_give(parts: list[Any], max_depth: int,
                                                                 max_keys: int) -> None:
    body = b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)
    for _ in range(2):  # the second time from the caches
        assert _fast(body, max_depth, max_keys) == _reference(body, max_depth, max_keys)


def test_a_cached_shape_gets_each_bodys_own_values() -> None:
    first = encode_php_query({"event": "ONTASKADD", "data": {"FIELDS_AFTER": {"ID": "1"}}, "l": ["x", "y"]}).encode()
    second = encode_php_query({"event": "ONTASKADD", "data": {"FIELDS_AFTER": {"ID": "2"}}, "l": ["z", "w"]}).encode()
    assert parse_php_query(first) == {"event": "ONTASKADD", "data": {"FIELDS_AFTER": {"ID": "1"}}, "l": ["x", "y"]}
    assert parse_php_query(second) == {"event": "ONTASKADD", "data": {"FIELDS_AFTER": {"ID": "2"}}, "l": ["z", "w"]}
    assert parse_php_query(first)["data"] is not parse_php_query(first)["data"]  # never shared between calls


def test_over_a_limit_is_refused_every_time_not_only_before_caching() -> None:
    for _ in range(3):
        with pytest.raises(FormError):
            parse_php_query(b"a[b][c]=1", max_depth=1)
        with pytest.raises(FormError):
            parse_php_query(b"a[9223372036854775807]=1&a[]=2")


def test_caches_stay_bounded_under_ever_new_names() -> None:
    from b24notify import phpform

    for i in range(3000):
        parse_php_query(f"k%5B{i}%5D=v{i}&x{i}=%41".encode())
    assert len(phpform._unescaped) <= phpform._CACHE_SIZE
    assert len(phpform._splits) <= phpform._CACHE_SIZE
    assert len(phpform._plans) <= phpform._PLANS
    long_name = "k" + "%41" * 5000
    assert parse_php_query((long_name + "=1").encode()) == {"k" + "A" * 5000: "1"}
    assert long_name not in phpform._unescaped  # long parts are unescaped, never kept
