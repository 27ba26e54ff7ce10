"""Hostile input at ``POST /webhooks/bitrix24``, driven through the real ASGI app and a real Redis.

Whatever arrives, the answer is a 4xx whose JSON says why (or 200 "ignored" for a genuine
sender's non-task event), never a 5xx; nothing is queued; and the app keeps serving. Hypothesis
generates the input. Each property is an inner ``@given`` function inside a plain test, so one
TestClient serves all of its examples and the test can check, once they are done, that the app
still answers its health probes and still takes a genuine event. Refused requests must write
nothing that queues work, so nothing is cleaned between examples: the emptiness check after each
one is the cleaning check.
"""

from __future__ import annotations

import json
import string
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis import Redis
from starlette.testclient import TestClient

from b24notify.dueset import DueSetKeys
from b24notify.events import EventType
from b24notify.keys import TASKS, Keys
from b24notify.phpform import encode_php_query
from b24notify.service.app import create_app
from b24notify.service.intake import MAX_BODY_BYTES

TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
DOMAIN = "acme.bitrix24.com"
MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"
WEBHOOK = "/webhooks/bitrix24"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
ID_MAX = 2**63 - 1
TASK_EVENTS = [kind.value for kind in EventType]
COMMENT_EVENTS = ["ONTASKCOMMENTADD", "ONTASKCOMMENTUPDATE", "ONTASKCOMMENTDELETE"]
OTHER_EVENTS = ["ONAPPINSTALL", "ONCRMDEALADD", "ONTASKADDX", "ONTASK_UPDATE", "TASK"]
REASONS = {"bad_request", "too_large", "malformed", "unsupported_media_type", "missing_token", "bad_token",
           "wrong_portal"}
MISSING = object()  # a field left out of the payload
RAW = "<<raw JSON literal>>"  # replaced, quotes and all, by a literal json.dumps cannot write

hostile = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
heavy = settings(hostile, max_examples=40)  # bodies near 64 KiB: fewer, each one is big


# -- genuine events, and how they are sent -------------------------------------------------------


def credentials(**fields: object) -> dict[str, object]:
    """``auth`` as our portal sends it; a field given as MISSING is left out."""
    auth: dict[str, object] = {"domain": DOMAIN, "client_endpoint": f"https://{DOMAIN}/rest/",
                               "server_endpoint": "https://oauth.bitrix.info/rest/", "member_id": MEMBER_ID,
                               "application_token": TOKEN}
    auth.update(fields)
    return {key: value for key, value in auth.items() if value is not MISSING}


def task_data(name: str, task: object, **comment: object) -> dict[str, object]:
    """``data`` with the task id where each event carries it (docs/protocol.md §2, event table)."""
    if name in COMMENT_EVENTS:
        return {"FIELDS_BEFORE": "undefined", "FIELDS_AFTER": {"ID": 555, "TASK_ID": task, **comment}}
    if name == "ONTASKDELETE":
        return {"FIELDS_BEFORE": {"ID": task}, "FIELDS_AFTER": "undefined"}
    return {"FIELDS_BEFORE": {"ID": task}, "FIELDS_AFTER": {"ID": task}}


def genuine(name: str = "ONTASKUPDATE", task: object = 123, **fields: object) -> dict[str, Any]:
    payload: dict[str, Any] = {"event": name, "event_handler_id": "975", "data": task_data(name, task),
                               "ts": "1466439714", "auth": credentials()}
    payload.update(fields)
    return {key: value for key, value in payload.items() if value is not MISSING}


def as_json(payload: object, literal: str | None = None) -> str:
    text = json.dumps(payload)  # ensure_ascii: a lone surrogate travels as the escape "\ud800"
    return text if literal is None else text.replace(json.dumps(RAW), literal)


def post(client: TestClient, body: bytes | str | Iterator[bytes], content_type: str | None = FORM,
         headers: Mapping[str, str] | None = None) -> httpx.Response:
    sent = dict(headers or {})
    if content_type is not None:
        sent["content-type"] = content_type
    return client.post(WEBHOOK, content=body, headers=sent)


def post_form(client: TestClient, payload: Mapping[str, Any]) -> httpx.Response:
    return post(client, encode_php_query(payload), FORM)


def post_json(client: TestClient, payload: object, literal: str | None = None) -> httpx.Response:
    return post(client, as_json(payload, literal), JSON)


def has_surrogates(text: str) -> bool:
    return any(0xD800 <= ord(char) <= 0xDFFF for char in text)


# -- what every refused request must look like ---------------------------------------------------


def queued_keys(redis: Redis, keys: Keys) -> list[str]:
    """Every key the ``schedule`` script writes for an accepted event that exists now."""
    due = DueSetKeys.of(keys, TASKS)
    written = [due.due, due.pending, due.since, keys.drop(), keys.watch_active(DOMAIN), keys.watch_next(DOMAIN)]
    return [key for key in written if redis.exists(key)]


def assert_refused(response: httpx.Response, redis: Redis, keys: Keys, *, status: int | None = None,
                   reason: str | None = None, may_be_ignored: bool = False) -> None:
    """A 4xx that says why, or (only for a genuine sender) 200 "ignored"; and nothing queued."""
    assert response.status_code < 500, f"HTTP {response.status_code}: {response.text[:200]}"
    body = response.json()
    if response.status_code == 200:
        assert may_be_ignored and body["status"] == "ignored", body
    else:
        assert 400 <= response.status_code < 500, body
        assert body["status"] == "rejected" and body["reason"] in REASONS and body["detail"], body
    if status is not None:
        assert response.status_code == status, body
    if reason is not None:
        assert body["reason"] == reason, body
    assert queued_keys(redis, keys) == []


def assert_still_serving(client: TestClient, redis: Redis, keys: Keys) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    answer = post_form(client, genuine(task=4242))
    assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
    assert redis.zrange(keys.due(TASKS), 0, -1) == [f"{DOMAIN}|4242".encode()]


@pytest.fixture
def client(make_settings, redis) -> Iterator[TestClient]:
    portal = make_settings(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN,
                           b24_member_id=MEMBER_ID)
    # A crash comes back as the 500 the portal would see, so "never a 5xx" is what fails, and
    # hypothesis reports the smallest input that crashes.
    with TestClient(create_app(portal), raise_server_exceptions=False) as test_client:
        yield test_client


# -- strategies ----------------------------------------------------------------------------------

surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
# Any text, lone surrogates included: JSON can carry them ("\ud800"), UTF-8 form bodies cannot.
wild_text = st.lists(st.characters() | surrogate, max_size=24).map("".join)
json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=ID_MAX - 2, max_value=2**90)
                | st.floats() | wild_text)
# Object keys are never "ID" or "TASK_ID": a random object must not turn into a genuine task id.
json_keys = st.text(max_size=8).filter(lambda key: key not in ("ID", "TASK_ID"))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=4),
    max_leaves=12,
)

# Task ids the product must refuse, as a form body carries them (text). Leading zeros ("007") and,
# in JSON, integral floats (7.0) are genuine ids: they are in test_odd_but_genuine_events_are_accepted.
absurd_id_texts = st.one_of(
    st.integers(max_value=0).map(str),
    st.integers(min_value=ID_MAX + 1).map(str),
    st.sampled_from([str(2**80), str(2**63), "-0", "+5", " 5", "5 ", "1e9", "1E3", "0x1F", "1_000", "5.0", "1.5",
                     "12abc", "١٢", "１２", "²", "Ⅻ", "NaN", "inf", "undefined", "null", "-", "--5", "0-5", "9" * 20,
                     "", "0" * 40, "0" * 30 + "-1"]),
    st.text(st.characters(categories=["Nd"]), min_size=1, max_size=6).filter(lambda digits: not digits.isascii()),
    wild_text.filter(lambda text: text.strip("0123456789") != ""),  # not all ASCII digits
)
absurd_form_ids = absurd_id_texts | st.lists(st.sampled_from(["5", "x", ""]), min_size=1, max_size=3)
absurd_json_ids = st.one_of(
    absurd_id_texts,
    st.integers(max_value=0),
    st.integers(min_value=ID_MAX + 1, max_value=2**200),
    st.floats().filter(lambda number: not (number.is_integer() and 0 < number <= ID_MAX)),
    st.none(),
    st.booleans(),
    st.lists(st.integers(1, 9), max_size=2),
    st.dictionaries(st.sampled_from(["ID", "0"]), st.integers(1, 9), max_size=1),
)
# Comment and message ids may be absent or 0 (the new task card); these are neither.
absurd_optional_ids = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=ID_MAX + 1, max_value=2**100),
    st.sampled_from(["-1", "1e9", "abc", "١٢", "+1", "1.5", str(2**80), "0x10"]),
    st.floats(allow_nan=True).filter(lambda number: not number.is_integer()),
)

wrong_tokens = st.one_of(
    st.text(string.ascii_lowercase + string.digits, min_size=len(TOKEN), max_size=len(TOKEN)),  # right length
    st.tuples(st.integers(0, len(TOKEN) - 1), st.characters() | surrogate).map(
        lambda change: TOKEN[: change[0]] + change[1] + TOKEN[change[0] + 1 :]),  # one character off
    st.sampled_from([TOKEN.upper(), TOKEN[:-1], TOKEN + "x", " " + TOKEN, TOKEN + " ", TOKEN + "\x00", TOKEN * 2, "0",
                     ""]),
    wild_text,
).filter(lambda token: token != TOKEN)

forged_domains = st.one_of(
    st.sampled_from(["evil.example.com", f"{DOMAIN}.evil.com", f"evil{DOMAIN}", f"{DOMAIN}:443", f"{DOMAIN}.",
                     f" {DOMAIN}", f"{DOMAIN}\x00", "acme.bitrix24.co", "bitrix24.com", "*", "localhost",
                     "127.0.0.1", f"https://{DOMAIN}", "аcme.bitrix24.com"]),
    st.from_regex(r"[a-z0-9.-]{1,30}(:[0-9]{1,5})?", fullmatch=True),
    wild_text,
).filter(lambda domain: domain != "" and domain.lower() != DOMAIN)
forged_member_ids = st.one_of(
    st.sampled_from([MEMBER_ID.upper(), MEMBER_ID[:-1], MEMBER_ID + "0", " " + MEMBER_ID, "0"]),
    st.text(string.hexdigits.lower(), min_size=len(MEMBER_ID), max_size=len(MEMBER_ID)),
    wild_text,
).filter(lambda member: member not in ("", MEMBER_ID))

# Pieces of PHP-style field names: brackets in every arrangement, ``[]`` appends, empty names,
# percent-escapes good and bad, and 64-bit index edges. None of them spells FIELDS_AFTER or
# application_token, so hostile fields can break an event but never complete one.
key_pieces = st.sampled_from(["data", "auth", "event", "ts", "x", "", "[", "]", "[]", "[[", "]]", "][", "[x]",
                              "[0]", "[-1]", "[00]", "[9223372036854775807]", "[9223372036854775808]", "%5B",
                              "%5D", "%", "%zz", "%4", "+", ".", " ", "=", "é", "\u202e"])
value_pieces = st.sampled_from(["", "1", "-1", "x", "%", "%zz", "%4", "+", "undefined", "[]", "9223372036854775808",
                                "%C3%A9", "="])
hostile_fields = st.lists(
    st.tuples(st.lists(key_pieces, max_size=12).map("".join), st.lists(value_pieces, max_size=3).map("".join)),
    max_size=40,
)

BAD_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80",
            b"\xe2\x82", b"\xf0\x9f\x98"]


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


not_utf8 = st.tuples(st.binary(max_size=16), st.sampled_from(BAD_UTF8), st.binary(max_size=16)).map(
    b"".join).filter(lambda data: not is_utf8(data))


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_number(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


# -- PHP-style form keys -------------------------------------------------------------------------


def test_form_keys_nested_past_the_limit_are_refused(client, redis, keys):
    @hostile
    @given(base=st.sampled_from(["data", "auth", "event", "a", "data[FIELDS_AFTER]"]),
           segment=st.sampled_from(["", "x", "ID", "0", "-1", "FIELDS_AFTER", "[", "a b", "é"]),
           depth=st.integers(9, 10_000))
    @example(base="a", segment="b", depth=10_000)
    @example(base="data", segment="", depth=10_000)
    def refused(base: str, segment: str, depth: int) -> None:
        depth = min(depth, 60_000 // len(f"[{segment}]"))  # stay under 64 KiB: this is about depth
        body = encode_php_query(genuine()) + f"&{base}{f'[{segment}]' * depth}=1"
        assert_refused(post(client, body), redis, keys, status=400, reason="malformed")

    refused()
    assert_still_serving(client, redis, keys)


def test_more_than_a_thousand_form_fields_are_refused(client, redis, keys):
    @hostile
    @given(count=st.integers(1_001, 20_000),
           field=st.sampled_from(["a=1", "data[]=1", "data[]", "=", "", "[x]=1", "auth[application_token]=x"]))
    def refused(count: int, field: str) -> None:
        count = min(count, 60_000 // (len(field) + 1))
        body = encode_php_query(genuine()) + "&" + "&".join([field] * count)
        assert_refused(post(client, body), redis, keys, status=400, reason="malformed")

    refused()
    assert_still_serving(client, redis, keys)


def test_malformed_form_keys_never_queue_anything(client, redis, keys):
    @hostile
    @given(name=st.sampled_from([*TASK_EVENTS, *OTHER_EVENTS, ""]), token=st.sampled_from([TOKEN, "nope", MISSING]),
           fields=hostile_fields)
    @example(name="ONTASKUPDATE", token=TOKEN, fields=[("data[9223372036854775807]", "1"), ("data[]", "2")])
    @example(name="ONTASKUPDATE", token=TOKEN, fields=[("data[FIELDS_AFTER", "1"), ("data]ID[", "2")])
    @example(name="ONTASKUPDATE", token=TOKEN, fields=[("", "1"), ("[data]", "1"), ("[]", "")])
    @example(name="ONTASKUPDATE", token=TOKEN, fields=[("data", "1"), ("auth[]", TOKEN)])
    @example(name="ONAPPINSTALL", token=TOKEN, fields=[("event[]", "x")])
    def refused(name: str, token: object, fields: list[tuple[str, str]]) -> None:
        head = {"event": name, "auth": credentials(application_token=token)}
        body = encode_php_query(head) + "".join(f"&{key}={value}" for key, value in fields)
        assert_refused(post(client, body.encode()), redis, keys, may_be_ignored=token == TOKEN)

    refused()
    assert_still_serving(client, redis, keys)


# -- size, encoding, content type ----------------------------------------------------------------


def test_bodies_over_64_kib_are_413_however_they_arrive(client, redis, keys):
    @heavy
    @given(size=st.integers(MAX_BODY_BYTES + 1, 4 * MAX_BODY_BYTES), chunk=st.integers(1024, 2 * MAX_BODY_BYTES),
           framing=st.sampled_from(["content-length", "chunked", "understated length", "overstated length"]),
           content_type=st.sampled_from([FORM, JSON, "text/plain", None]))
    def refused(size: int, chunk: int, framing: str, content_type: str | None) -> None:
        event = encode_php_query(genuine()).encode()
        body = event if framing == "overstated length" else event + b"&padding=" + b"x" * (size - len(event))
        headers = {"understated length": {"content-length": "100"},
                   "overstated length": {"content-length": str(size)}}.get(framing, {})
        content: bytes | Iterator[bytes] = body
        if framing == "chunked":  # no Content-Length at all: only counting the stream can stop it
            content = iter([body[start : start + chunk] for start in range(0, len(body), chunk)])
        answer = post(client, content, content_type, headers)
        assert_refused(answer, redis, keys, status=413, reason="too_large")

    refused()
    assert_still_serving(client, redis, keys)


def test_content_length_that_is_not_a_number_is_400(client, redis, keys):
    @hostile
    @given(declared=st.text(string.ascii_letters + string.digits + string.punctuation + " ", max_size=30).filter(
        lambda text: not is_number(text)) | st.just("9" * 5_000))
    def refused(declared: str) -> None:
        answer = post(client, encode_php_query(genuine()), FORM, {"content-length": declared})
        assert_refused(answer, redis, keys, status=400, reason="bad_request")

    refused()
    assert_still_serving(client, redis, keys)


def test_bytes_that_are_not_utf8_are_400(client, redis, keys):
    @hostile
    @given(junk=not_utf8, where=st.sampled_from(["form value", "form key", "percent-escaped value",
                                                 "percent-escaped key", "json string", "whole body"]),
           content_type=st.sampled_from([FORM, JSON]))
    def refused(junk: bytes, where: str, content_type: str) -> None:
        escaped = "".join(f"%{byte:02X}" for byte in junk).encode()
        event = encode_php_query(genuine()).encode()
        body = {"form value": event + b"&note=" + junk,
                "form key": event + b"&" + junk + b"=1",
                "percent-escaped value": event + b"&note=" + escaped,
                "percent-escaped key": event + b"&" + escaped + b"=1",
                "json string": as_json(genuine(note=RAW), '"@@"').encode().replace(b"@@", junk),
                "whole body": junk}[where]
        if where.startswith("json"):
            content_type = JSON
        elif where != "whole body":
            content_type = FORM
        assert_refused(post(client, body, content_type), redis, keys, status=400, reason="malformed")

    refused()
    assert_still_serving(client, redis, keys)


def test_random_content_types_are_415(client, redis, keys):
    header_text = st.text(string.ascii_letters + string.digits + string.punctuation + " ", max_size=60)

    @hostile
    @given(content_type=st.one_of(
        header_text,
        st.sampled_from(["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/jsonp",
                         "application/json-patch+json", f"{FORM}-evil", "application", "*/*", f";{JSON}",
                         f"{JSON}x; charset=utf-8", "x-www-form-urlencoded", "text/json"]),
        st.none(),
    ).filter(lambda value: value is None or media_type(value) not in (FORM, JSON)))
    def refused(content_type: str | None) -> None:
        answer = post(client, encode_php_query(genuine()), content_type)
        assert_refused(answer, redis, keys, status=415, reason="unsupported_media_type")

    refused()
    assert_still_serving(client, redis, keys)


# -- JSON bodies ---------------------------------------------------------------------------------


def test_hostile_json_bodies_never_queue_anything(client, redis, keys):
    events = st.sampled_from([*TASK_EVENTS, *OTHER_EVENTS]) | wild_text | json_values
    field_blocks = json_values | st.fixed_dictionaries({"ID": absurd_json_ids, "TASK_ID": absurd_json_ids})
    datas = json_values | st.fixed_dictionaries({"FIELDS_AFTER": field_blocks, "FIELDS_BEFORE": field_blocks})
    hostile_auths = st.one_of(
        st.builds(credentials, application_token=wrong_tokens | json_values | st.just(MISSING)),
        st.builds(credentials, domain=json_values, member_id=json_values, client_endpoint=json_values),
        json_values,
    )
    payloads = st.one_of(
        # A genuine sender (it has the token) with everything else wrong, so parsing goes past auth.
        st.fixed_dictionaries({"event": events, "auth": st.builds(credentials)},
                              optional={"data": datas, "ts": json_values}),
        st.fixed_dictionaries({"auth": hostile_auths}, optional={"event": events, "data": datas, "ts": json_values}),
        json_values,  # not even an object
    )

    @hostile
    @given(payload=payloads)
    @example(payload={"event": "ONTASKUPDATE", "auth": {"application_token": "\ud800"}})
    @example(payload={"event": "ONTASKUPDATE", "auth": credentials(application_token=["\udfff"])})
    def refused(payload: object) -> None:
        auth = payload.get("auth") if isinstance(payload, dict) else None
        genuine_sender = isinstance(auth, dict) and auth.get("application_token") == TOKEN
        assert_refused(post_json(client, payload), redis, keys, may_be_ignored=genuine_sender)

    refused()
    assert_still_serving(client, redis, keys)


def test_deeply_nested_json_is_refused(client, redis, keys):
    @hostile
    @given(depth=st.integers(1, 32_000), shape=st.sampled_from(["list", "object"]),
           where=st.sampled_from(["body", "event", "auth", "token", "data", "fields", "id"]))
    @example(depth=100_000 // 4, shape="list", where="body")
    @example(depth=900, shape="list", where="event")
    def refused(depth: int, shape: str, where: str) -> None:
        if shape == "list":
            literal = "[" * depth + "]" * depth
        else:
            depth = min(depth, 10_000)  # '{"a":' is five bytes a level
            literal = '{"a":' * depth + "0" + "}" * depth
        payload: object = {
            "body": RAW,
            "event": genuine(event=RAW),
            "auth": genuine(auth=RAW),
            "token": genuine(auth=credentials(application_token=RAW)),
            "data": genuine(data=RAW),
            "fields": genuine(data={"FIELDS_AFTER": RAW}),
            "id": genuine(task=RAW),
        }[where]
        assert_refused(post_json(client, payload, literal), redis, keys)

    refused()
    assert_still_serving(client, redis, keys)


def test_huge_json_numbers_are_refused(client, redis, keys):
    huge = st.one_of(
        st.integers(20, 20_000).map(lambda digits: "9" * digits),
        st.integers(20, 20_000).map(lambda digits: "-" + "9" * digits),
        st.integers(309, 100_000).map(lambda exponent: f"1e{exponent}"),
        st.integers(19, 20_000).map(lambda zeros: "1" + "0" * zeros + ".0"),
        st.sampled_from(["1e309", "-1e309", "NaN", "Infinity", "-Infinity", "1E400", "0e0", "-0.0", "1e-400", "2.5",
                         str(2**80), str(2**63), "-1", "0"]),
    )

    @hostile
    @given(literal=huge, where=st.sampled_from(["id", "event", "token", "domain", "member id"]),
           name=st.sampled_from(TASK_EVENTS))
    def refused(literal: str, where: str, name: str) -> None:
        payload = {
            "id": genuine(name, task=RAW),
            "event": genuine(event=RAW),
            "token": genuine(name, auth=credentials(application_token=RAW)),
            "domain": genuine(name, auth=credentials(domain=RAW)),
            "member id": genuine(name, auth=credentials(member_id=RAW)),
        }[where]
        assert_refused(post_json(client, payload, literal), redis, keys)

    refused()
    assert_still_serving(client, redis, keys)


# -- who is sending ------------------------------------------------------------------------------


def test_wrong_and_missing_tokens_are_401(client, redis, keys):
    @hostile
    @given(token=wrong_tokens | json_values.filter(lambda value: not isinstance(value, str)) | st.just(MISSING),
           name=st.sampled_from([*TASK_EVENTS, *OTHER_EVENTS]), as_form=st.booleans())
    @example(token="\ud800", name="ONTASKUPDATE", as_form=False)
    @example(token="é" * len(TOKEN), name="ONTASKUPDATE", as_form=True)
    def refused(token: object, name: str, as_form: bool) -> None:
        payload = genuine(name, auth=credentials(application_token=token))
        sendable_as_form = isinstance(token, str) and not has_surrogates(token)
        answer = post_form(client, payload) if as_form and sendable_as_form else post_json(client, payload)
        reason = "bad_token" if isinstance(token, str) and token else "missing_token"
        assert_refused(answer, redis, keys, status=401, reason=reason)

    refused()
    assert_still_serving(client, redis, keys)


def test_a_missing_or_mistyped_auth_is_401(client, redis, keys):
    @hostile
    @given(auth=json_values.filter(lambda value: not isinstance(value, dict)) | st.just(MISSING),
           name=st.sampled_from([*TASK_EVENTS, *OTHER_EVENTS]))
    def refused(auth: object, name: str) -> None:
        assert_refused(post_json(client, genuine(name, auth=auth)), redis, keys, status=401, reason="missing_token")

    refused()
    assert_still_serving(client, redis, keys)


def test_forged_portal_identity_is_403(client, redis, keys):
    @hostile
    @given(name=st.sampled_from(TASK_EVENTS), domain=forged_domains, member_id=forged_member_ids,
           forged=st.sampled_from(["domain", "member_id", "both"]), as_form=st.booleans())
    @example(name="ONTASKUPDATE", domain="evil.example.com", member_id="é", forged="member_id", as_form=True)
    def refused(name: str, domain: str, member_id: str, forged: str, as_form: bool) -> None:
        auth = credentials(domain=domain if forged != "member_id" else DOMAIN,
                           member_id=member_id if forged != "domain" else MEMBER_ID)
        payload = genuine(name, auth=auth)
        sendable_as_form = not has_surrogates(domain + member_id)
        answer = post_form(client, payload) if as_form and sendable_as_form else post_json(client, payload)
        assert_refused(answer, redis, keys, status=403, reason="wrong_portal")

    refused()
    assert_still_serving(client, redis, keys)


# -- ids -----------------------------------------------------------------------------------------


def test_absurd_task_ids_are_malformed(client, redis, keys):
    @hostile
    @given(name=st.sampled_from(TASK_EVENTS), form_id=absurd_form_ids, json_id=absurd_json_ids, as_form=st.booleans())
    @example(name="ONTASKUPDATE", form_id=str(2**80), json_id=2**80, as_form=False)
    @example(name="ONTASKADD", form_id="١٢", json_id=1.5, as_form=True)
    def refused(name: str, form_id: object, json_id: object, as_form: bool) -> None:
        if as_form and not (isinstance(form_id, str) and has_surrogates(form_id)):
            answer = post_form(client, genuine(name, task=form_id))
        else:
            answer = post_json(client, genuine(name, task=json_id))
        assert_refused(answer, redis, keys, status=400, reason="malformed")

    refused()
    assert_still_serving(client, redis, keys)


def test_absurd_comment_and_message_ids_are_malformed(client, redis, keys):
    @hostile
    @given(name=st.sampled_from(COMMENT_EVENTS), field=st.sampled_from(["ID", "MESSAGE_ID"]), bad=absurd_optional_ids,
           as_form=st.booleans())
    def refused(name: str, field: str, bad: object, as_form: bool) -> None:
        payload = genuine(name, data=task_data(name, 77, **{field: bad}))
        sendable_as_form = isinstance(bad, str | int)
        answer = post_form(client, payload) if as_form and sendable_as_form else post_json(client, payload)
        assert_refused(answer, redis, keys, status=400, reason="malformed")

    refused()
    assert_still_serving(client, redis, keys)


def test_odd_but_genuine_events_are_accepted_once(client, redis, keys):
    """The deliberately valid cases: leading zeros, integral JSON floats, a lenient event name, and
    any junk in ``ts``, which is informational and never costs an event (events.py)."""
    due = DueSetKeys.of(keys, TASKS)

    @settings(hostile, max_examples=60)
    @given(name=st.sampled_from(TASK_EVENTS), task=st.integers(1, ID_MAX), zeros=st.integers(0, 30),
           spelling=st.sampled_from(["as is", "lower", "padded"]), shape=st.sampled_from(["text", "int", "float"]),
           ts=json_values, as_form=st.booleans())
    def accepted(name: str, task: int, zeros: int, spelling: str, shape: str, ts: object, as_form: bool) -> None:
        sent_name = {"as is": name, "lower": name.lower(), "padded": f" \t{name}\n"}[spelling]
        if shape == "float":
            task = int(float(task))
            if task > ID_MAX:
                task = 2**53
        sent_id: object = {"text": "0" * zeros + str(task), "int": task, "float": float(task)}[shape]
        data = task_data(name, sent_id)
        if as_form and shape != "float":
            answer = post_form(client, genuine(sent_name, data=data, ts=str(task)))
        else:
            answer = post_json(client, genuine(sent_name, data=data, ts=ts))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "accepted", "task": task, "coalesced": False}
        member = f"{DOMAIN}|{task}".encode()
        assert redis.zrange(due.due, 0, -1) == [member]
        assert redis.smembers(keys.drop()) == ({member} if name == "ONTASKDELETE" else set())
        redis.delete(*queued_keys(redis, keys))

    accepted()
    assert_still_serving(client, redis, keys)


def test_an_unknown_event_name_with_a_lone_surrogate_is_ignored_not_a_500(client, redis, keys):
    """JSON can carry a lone surrogate ("\\ud800"); echoing it in the "ignored" answer must not crash."""
    answer = post_json(client, genuine("\ud800"))
    assert_refused(answer, redis, keys, may_be_ignored=True)
    assert answer.status_code == 200 and answer.json()["status"] == "ignored"
    assert_still_serving(client, redis, keys)


def test_a_long_run_of_zeros_in_an_id_is_refused_without_stalling(client, redis, keys):
    """The 64 KiB limit bounds the work per request only if checking a body is linear in its size.
    A task id of 30 000 zeros and a letter makes a 30 KB body that a linear check refuses in
    milliseconds; anything slower holds the web's one event loop, and every other request, that long."""
    started = time.perf_counter()
    answer = post_json(client, genuine(data={"FIELDS_AFTER": {"ID": "0" * 30_000 + "x"}}))
    elapsed = time.perf_counter() - started
    assert_refused(answer, redis, keys, status=400, reason="malformed")
    assert elapsed < 0.5, f"one 30 KB body held the event loop for {elapsed:.1f} s"
    assert_still_serving(client, redis, keys)
