"""Parsing outbound task events, as docs/protocol.md §1–2 shows them, from form and JSON bodies."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b24notify.events import (
    EventAuth,
    EventType,
    IgnoredEvent,
    MalformedEvent,
    MissingToken,
    TaskEvent,
    auth_of,
    parse_event,
)
from b24notify.phpform import encode_php_query, parse_php_form, parse_php_query

TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
ACCESS_TOKEN = "s6p6eclrvim6da22ft9ch94ekreb52lv"
REFRESH_TOKEN = "4s386p3q0tr8dy89xvmt96234v3dljg8"

# An outgoing webhook gets exactly these five (docs/protocol.md §1 "Top-level form fields").
WEBHOOK_AUTH = {
    "domain": "some-domain.bitrix24.com",
    "client_endpoint": "https://some-domain.bitrix24.com/rest/",
    "server_endpoint": "https://oauth.bitrix.info/rest/",
    "member_id": "a223c6b3710f85df22e9377d6c4f7553",
    "application_token": TOKEN,
}
# An application (event.bind) also gets OAuth tokens, which we must not keep.
APP_AUTH = {
    "access_token": ACCESS_TOKEN,
    "expires_in": "3600",
    "scope": "task",
    **WEBHOOK_AUTH,
    "status": "L",
    "refresh_token": REFRESH_TOKEN,
}
EXPECTED_AUTH = EventAuth(
    domain="some-domain.bitrix24.com",
    member_id="a223c6b3710f85df22e9377d6c4f7553",
    application_token=TOKEN,
    client_endpoint="https://some-domain.bitrix24.com/rest/",
)

U = "undefined"
# (event, data, task_id, comment_id, message_id): the event table of docs/protocol.md §2.
EVENTS = {
    "task_add": ("ONTASKADD", {"FIELDS_BEFORE": U, "FIELDS_AFTER": {"ID": 8017}}, 8017, None, None),
    "task_update": ("ONTASKUPDATE", {"FIELDS_BEFORE": {"ID": 8017}, "FIELDS_AFTER": {"ID": 8017}}, 8017, None, None),
    "task_delete": ("ONTASKDELETE", {"FIELDS_BEFORE": {"ID": 8017}, "FIELDS_AFTER": U}, 8017, None, None),
    "comment_add_old_card": (
        "ONTASKCOMMENTADD",
        {"FIELDS_BEFORE": U, "FIELDS_AFTER": {"ID": 123, "TASK_ID": 555}},
        555,
        123,
        None,
    ),
    "comment_add_new_card": (
        "ONTASKCOMMENTADD",
        {"FIELDS_BEFORE": U, "FIELDS_AFTER": {"ID": 0, "TASK_ID": 555, "MESSAGE_ID": 1458}},
        555,
        None,
        1458,
    ),
    "comment_update": (
        "ONTASKCOMMENTUPDATE",
        {"FIELDS_BEFORE": {"ID": 123, "TASK_ID": 555}, "FIELDS_AFTER": {"ID": 123, "TASK_ID": 555, "ACTION": "EDIT"}},
        555,
        123,
        None,
    ),
    "comment_delete": (
        "ONTASKCOMMENTDELETE",
        {"FIELDS_BEFORE": {"ID": 123, "TASK_ID": 555}, "FIELDS_AFTER": {"ID": 123, "TASK_ID": 555, "ACTION": "DEL"}},
        555,
        123,
        None,
    ),
    "comment_delete_before_only": (
        "ONTASKCOMMENTDELETE",
        {"FIELDS_BEFORE": {"ID": 123, "TASK_ID": 555}, "FIELDS_AFTER": U},
        555,
        123,
        None,
    ),
}


def payload(event: str, data: Any, auth: Any = WEBHOOK_AUTH, **extra: Any) -> dict[str, Any]:
    body = {
        "event": event,
        "event_handler_id": "975",
        "data": {**data, "IS_ACCESSIBLE_BEFORE": "N", "IS_ACCESSIBLE_AFTER": U},
        "ts": "1466439714",
        "auth": auth,
    }
    body.update(extra)
    return body


def via_form(body: dict[str, Any]) -> dict[str, Any]:
    """What the web endpoint sees: the portal's http_build_query body, parsed back."""
    return parse_php_query(encode_php_query(body).encode())


def via_json(body: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(body))


TRANSPORTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"form": via_form, "json": via_json}


def reason(body: Any) -> str:
    with pytest.raises(MalformedEvent) as raised:
        parse_event(body)
    return str(raised.value)


# --- every event, both card forms, both transports, both kinds of subscription -------------------


@pytest.mark.parametrize("auth", [WEBHOOK_AUTH, APP_AUTH], ids=["webhook", "app"])
@pytest.mark.parametrize("transport", TRANSPORTS.values(), ids=TRANSPORTS.keys())
@pytest.mark.parametrize("case", EVENTS.values(), ids=EVENTS.keys())
def test_task_event_is_parsed(case: tuple[Any, ...], transport: Any, auth: dict[str, str]) -> None:
    name, data, task_id, comment_id, message_id = case
    assert parse_event(transport(payload(name, data, auth))) == TaskEvent(
        type=EventType(name),
        task_id=task_id,
        comment_id=comment_id,
        message_id=message_id,
        ts=1466439714,
        auth=EXPECTED_AUTH,
    )


def test_json_example_from_the_docs_parses() -> None:
    # EN on-task-comment-add.md, quoted in docs/protocol.md §1 "Literal example payloads".
    doc = {
        "event": "ONTASKCOMMENTADD",
        "data": {
            "FIELDS_BEFORE": "undefined",
            "FIELDS_AFTER": {"ID": 123, "TASK_ID": 555},
            "IS_ACCESSIBLE_BEFORE": "undefined",
            "IS_ACCESSIBLE_AFTER": "undefined",
        },
        "ts": "1466439714",
        "auth": APP_AUTH,
    }
    event = parse_event(doc)
    assert isinstance(event, TaskEvent)
    assert (event.type, event.task_id, event.comment_id, event.message_id) == (
        EventType.ONTASKCOMMENTADD,
        555,
        123,
        None,
    )


@pytest.mark.parametrize("name", ["ontaskupdate", "OnTaskUpdate", " ONTASKUPDATE "])
def test_event_name_is_case_insensitive(name: str) -> None:
    event = parse_event(payload(name, {"FIELDS_AFTER": {"ID": "7"}}))
    assert isinstance(event, TaskEvent)
    assert event.type is EventType.ONTASKUPDATE


@pytest.mark.parametrize("name", ["ONAPPINSTALL", "onCrmDealAdd", "ONTASKRESULTADD"])
def test_other_events_are_ignored_by_upper_case_name(name: str) -> None:
    assert parse_event(payload(name, {"FIELDS_AFTER": {"ID": "x"}})) == IgnoredEvent(name.upper())


def test_comment_delete_prefers_fields_after_and_falls_back_only_when_task_id_is_absent() -> None:
    data = {"FIELDS_BEFORE": {"ID": "1", "TASK_ID": "10"}, "FIELDS_AFTER": {"ID": "2", "TASK_ID": "20"}}
    event = parse_event(payload("ONTASKCOMMENTDELETE", data))
    assert isinstance(event, TaskEvent)
    assert (event.task_id, event.comment_id) == (20, 2)
    data["FIELDS_AFTER"] = {"ID": "2", "TASK_ID": "oops"}
    assert reason(payload("ONTASKCOMMENTDELETE", data)) == "task id 'oops' is not an integer"


def test_comment_add_does_not_look_in_fields_before() -> None:
    data = {"FIELDS_BEFORE": {"ID": "1", "TASK_ID": "10"}, "FIELDS_AFTER": U}
    assert reason(payload("ONTASKCOMMENTADD", data)) == "data[FIELDS_AFTER][TASK_ID] is missing"


@pytest.mark.parametrize("value", [12.0, "0012", 12])
def test_integral_floats_and_zero_padded_strings_are_ids(value: Any) -> None:
    event = parse_event(payload("ONTASKADD", {"FIELDS_AFTER": {"ID": value}}))
    assert isinstance(event, TaskEvent)
    assert event.task_id == 12


def test_largest_64_bit_id_is_accepted() -> None:
    event = parse_event(payload("ONTASKADD", {"FIELDS_AFTER": {"ID": str(2**63 - 1)}}))
    assert isinstance(event, TaskEvent)
    assert event.task_id == 2**63 - 1


@pytest.mark.parametrize("ts", [None, "", "soon", "-5", [], "1" * 50])
def test_bad_or_missing_ts_is_none_not_a_rejection(ts: Any) -> None:
    body = payload("ONTASKADD", {"FIELDS_AFTER": {"ID": "1"}})
    body["ts"] = ts
    event = parse_event(body)
    assert isinstance(event, TaskEvent)
    assert event.ts is None


@pytest.mark.parametrize("comment_id", [None, "", "0", 0])
def test_absent_or_zero_comment_id_is_none(comment_id: Any) -> None:
    event = parse_event(payload("ONTASKCOMMENTADD", {"FIELDS_AFTER": {"ID": comment_id, "TASK_ID": "5"}}))
    assert isinstance(event, TaskEvent)
    assert event.comment_id is None


# --- auth ----------------------------------------------------------------------------------------


def test_auth_of_keeps_only_what_we_use() -> None:
    auth = auth_of(payload("ONTASKADD", {}, APP_AUTH))
    assert auth == EXPECTED_AUTH
    assert not hasattr(auth, "access_token")


def test_auth_of_tolerates_missing_domain_and_member_id() -> None:
    assert auth_of({"auth": {"application_token": TOKEN}}) == EventAuth("", "", TOKEN, None)


def test_no_token_in_any_repr() -> None:
    event = parse_event(payload("ONTASKADD", {"FIELDS_AFTER": {"ID": "1"}}, APP_AUTH))
    for text in (repr(event), str(event), repr(auth_of(payload("X", {}, APP_AUTH)))):
        assert "some-domain.bitrix24.com" in text
        for secret in (TOKEN, ACCESS_TOKEN, REFRESH_TOKEN):
            assert secret not in text


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (None, "auth is missing"),
        ("undefined", "auth is missing"),
        (["x"], "auth is missing"),
        ({"domain": "d"}, "auth[application_token] is missing"),
        ({**WEBHOOK_AUTH, "application_token": ""}, "auth[application_token] is missing"),
        ({**WEBHOOK_AUTH, "application_token": ["x"]}, "auth[application_token] is missing"),
    ],
)
def test_missing_token_is_its_own_error(auth: Any, message: str) -> None:
    body = payload("ONTASKADD", {"FIELDS_AFTER": {"ID": "1"}}, auth)
    for call in (auth_of, parse_event):
        with pytest.raises(MissingToken) as raised:
            call(body)
        assert str(raised.value) == message
        assert isinstance(raised.value, MalformedEvent)
        assert isinstance(raised.value, ValueError)


def test_unknown_event_without_token_is_not_ignored_but_refused() -> None:
    body = payload("ONAPPINSTALL", {})
    del body["auth"]
    with pytest.raises(MissingToken):
        parse_event(body)


def test_non_string_domain_is_malformed_but_not_a_missing_token() -> None:
    with pytest.raises(MalformedEvent, match=r"auth\[domain\] is not a string") as raised:
        auth_of({"auth": {**WEBHOOK_AUTH, "domain": {"x": "y"}}})
    assert not isinstance(raised.value, MissingToken)


# --- rejections ----------------------------------------------------------------------------------


def _without(path: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        node = body
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return edit


def _setting(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        node = body
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("case", "edit", "message"),
    [
        ("task_update", _without(("event",)), "event name is missing"),
        ("task_update", _setting(("event",), ""), "event name is missing"),
        ("task_update", _setting(("event",), "  "), "event name is missing"),
        ("task_update", _setting(("event",), ["ONTASKUPDATE"]), "event name is not a string"),
        ("task_update", _without(("data",)), "data[FIELDS_AFTER][ID] is missing"),
        ("task_update", _setting(("data",), U), "data[FIELDS_AFTER][ID] is missing"),
        ("task_update", _setting(("data", "FIELDS_AFTER"), U), "data[FIELDS_AFTER][ID] is missing"),
        ("task_update", _setting(("data", "FIELDS_AFTER", "ID"), ""), "data[FIELDS_AFTER][ID] is missing"),
        ("task_add", _without(("data", "FIELDS_AFTER", "ID")), "data[FIELDS_AFTER][ID] is missing"),
        ("task_delete", _setting(("data", "FIELDS_BEFORE"), U), "data[FIELDS_BEFORE][ID] is missing"),
        (
            "comment_add_old_card",
            _without(("data", "FIELDS_AFTER", "TASK_ID")),
            "data[FIELDS_AFTER][TASK_ID] is missing",
        ),
        ("comment_update", _setting(("data", "FIELDS_AFTER"), U), "data[FIELDS_AFTER][TASK_ID] is missing"),
        (
            "comment_delete_before_only",
            _setting(("data", "FIELDS_BEFORE"), U),
            "data[FIELDS_BEFORE][TASK_ID] is missing",
        ),
        ("comment_add_old_card", _setting(("data", "FIELDS_AFTER", "ID"), "x"), "comment id 'x' is not an integer"),
        ("comment_add_old_card", _setting(("data", "FIELDS_AFTER", "ID"), -4), "comment id -4 is negative"),
        (
            "comment_add_new_card",
            _setting(("data", "FIELDS_AFTER", "MESSAGE_ID"), "1.5"),
            "message id '1.5' is not an integer",
        ),
    ],
)
def test_malformed_event_says_why(case: str, edit: Callable[[dict[str, Any]], None], message: str) -> None:
    name, data, *_ = EVENTS[case]
    body = payload(name, copy.deepcopy(data))
    edit(body)
    assert reason(body) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "task id 'abc' is not an integer"),
        ("12.5", "task id '12.5' is not an integer"),
        ("1e3", "task id '1e3' is not an integer"),
        (" 12", "task id ' 12' is not an integer"),
        ("+12", "task id '+12' is not an integer"),
        ("١٢", "task id '١٢' is not an integer"),
        ("1_000", "task id '1_000' is not an integer"),
        (True, "task id True is not an integer"),
        (False, "task id False is not an integer"),
        (12.5, "task id 12.5 is not an integer"),
        (math.nan, "task id nan is not an integer"),
        (math.inf, "task id inf is not an integer"),
        ({"x": "y"}, "task id <dict> is not an integer"),
        (["1"], "task id <list> is not an integer"),
        (0, "task id 0 is not positive"),
        ("0", "task id '0' is not positive"),
        ("-0", "task id '-0' is not positive"),
        (-3, "task id -3 is not positive"),
        ("-3", "task id '-3' is not positive"),
        (2**63, "task id 9223372036854775808 is out of range"),
        ("9223372036854775808", "task id '9223372036854775808' is out of range"),
        (1e19, "task id 1e+19 is out of range"),
        (-(2**70), "task id -1180591620717411303424 is out of range"),
        pytest.param(10**5000, "task id <a huge number> is out of range", id="huge-int"),
        pytest.param("9" * 100_000, f"task id {'9' * 40!r}… is out of range", id="huge-text"),
    ],
)
def test_bad_task_id_says_why(value: Any, message: str) -> None:
    assert reason(payload("ONTASKADD", {"FIELDS_AFTER": {"ID": value}})) == message


@pytest.mark.parametrize("junk", [None, [], "ONTASKADD", 7])
def test_payload_that_is_not_an_object_is_malformed(junk: Any) -> None:
    assert reason(junk) == "event payload is not an object"


# --- fuzzing -------------------------------------------------------------------------------------

_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "0", "-1", "undefined", "12", "9" * 25, "ONTASKADD", "ontaskcommentdelete"])
)
_keys = st.sampled_from(["event", "data", "auth", "ts", "FIELDS_AFTER", "FIELDS_BEFORE", "ID", "TASK_ID"]) | st.text(
    max_size=6
)
_junk = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5))


def _accepts_or_says_why(body: Any) -> None:
    try:
        result = parse_event(body)
    except MalformedEvent as exc:
        assert str(exc)
        return
    assert isinstance(result, TaskEvent | IgnoredEvent)
    if isinstance(result, TaskEvent):
        assert 0 < result.task_id < 2**63


@given(_junk)
def test_arbitrary_junk_only_raises_malformed_event(body: Any) -> None:
    _accepts_or_says_why(body)


@given(
    event=st.sampled_from([e.value for e in EventType]) | _leaves,
    before=_junk,
    after=_junk,
    auth=st.just(WEBHOOK_AUTH) | _junk,
)
def test_junk_in_the_right_places_only_raises_malformed_event(event: Any, before: Any, after: Any, auth: Any) -> None:
    _accepts_or_says_why({"event": event, "data": {"FIELDS_BEFORE": before, "FIELDS_AFTER": after}, "auth": auth})


_form_keys = st.sampled_from(
    [
        "event",
        "auth[application_token]",
        "data[FIELDS_AFTER][ID]",
        "data[FIELDS_AFTER][TASK_ID]",
        "data[FIELDS_BEFORE][]",
    ]
) | st.text(st.sampled_from("adeFIT_[]0"), max_size=20)


@given(st.lists(st.tuples(_form_keys, st.text(max_size=6) | st.sampled_from(["ONTASKADD", "1", "0"])), max_size=12))
def test_junk_form_fields_only_raise_malformed_event(pairs: list[tuple[str, str]]) -> None:
    _accepts_or_says_why(parse_php_form(pairs, max_depth=64))
