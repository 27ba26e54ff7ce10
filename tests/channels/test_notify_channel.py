"""The personal-notification channel (im.notify.system.add) against the simulator, and against a
loopback portal that answers ``false`` ("nothing was created")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from b24notify.alerts import sample_alert
from b24notify.channels.base import (
    Channel,
    DeliveryDeferred,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from b24notify.channels.content import chat_text
from b24notify.channels.notify import PersonalChannel, classify_notify_error, notification_tag
from b24notify.devtools.simulator import RunningSimulator
from b24notify.diff import ChangeKind
from b24notify.notices import Notice, Target
from b24notify.rest.client import Backoff, RestClient
from b24notify.rest.errors import BudgetSpent, classify
from b24notify.settings import parse_webhook_url
from tests.support.servers import ThreadedServer


def rest_client(webhook_url: str) -> RestClient:
    return RestClient(parse_webhook_url(webhook_url), timeout=5, backoff=Backoff(attempts=1))


@pytest.fixture
def client(simulator: RunningSimulator) -> Iterator[RestClient]:
    with rest_client(simulator.webhook_url) as rest:
        yield rest


def personal(user_id: int = 503, *kinds: ChangeKind, language: str = "en") -> Notice:
    alerts = tuple(sample_alert(kind) for kind in kinds or (ChangeKind.NEW,))
    return Notice(alerts, Target("notify", "", user_id), language)


def requests(simulator: RunningSimulator, method: str) -> list[dict[str, Any]]:
    return list(simulator.control.calls(method)["calls"])


def test_personal_channel_is_a_repeat_safe_channel(client: RestClient) -> None:
    channel: Channel = PersonalChannel(client, client_id="b24notify", send_seconds=9)
    assert channel.name == "notify" and channel.send_seconds == 9
    assert getattr(channel, "repeat_safe", False) is True
    assert not hasattr(channel, "find_posted")  # a repeat replaces: nothing to look up
    with pytest.raises(ValueError, match="CLIENT_ID"):
        PersonalChannel(client, client_id=" ")


def test_a_notice_reaches_its_person_with_tag_and_client_id(simulator: RunningSimulator, client: RestClient) -> None:
    notice = personal(503)
    PersonalChannel(client, client_id="b24notify").send(notice)

    [call] = requests(simulator, "im.notify.system.add")
    assert call["params"]["USER_ID"] == 503
    assert call["params"]["MESSAGE"] == chat_text(notice)
    assert call["params"]["TAG"] == notification_tag(notice)
    assert call["params"]["CLIENT_ID"] == "b24notify"
    assert [n["message"] for n in simulator.control.shown_notifications(503)] == [chat_text(notice)]


def test_a_repeat_replaces_and_two_people_keep_their_own(simulator: RunningSimulator, client: RestClient) -> None:
    # Needs the simulator's TAG/CLIENT_ID semantics (helper S): same app TAG, one notification.
    channel = PersonalChannel(client, client_id="b24notify")
    for_anna, for_boris = personal(503), personal(504)
    channel.send(for_anna)
    channel.send(for_boris)
    channel.send(for_anna)  # a repeat (its record was lost)

    assert len(simulator.control.shown_notifications(503)) == 1
    assert len(simulator.control.shown_notifications(504)) == 1


def test_the_tag_is_short_stable_and_differs_per_recipient_and_change() -> None:
    tag = notification_tag(personal(503))
    assert tag == notification_tag(personal(503)) and tag.startswith("b24n:") and len(tag) == 5 + 32
    assert tag != notification_tag(personal(504))  # one TAG for two people would delete one's
    assert tag != notification_tag(personal(503, ChangeKind.CLOSED))
    assert tag != notification_tag(personal(503, ChangeKind.NEW, ChangeKind.CLOSED))
    # The same change on another channel is another notice too.
    assert tag != notification_tag(Notice((sample_alert(),), Target("chat", "503", 503)))


def test_send_many_is_one_request_each_with_its_own_outcome(simulator: RunningSimulator, client: RestClient) -> None:
    simulator.control.add_faults({"method": "im.notify.system.add", "error": "ATTACH_OVERSIZE", "count": 1})
    notices = [personal(504), personal(505), personal(0), personal(503, ChangeKind.CLOSED)]

    outcomes = PersonalChannel(client, client_id="b24notify").send_many(notices)

    assert isinstance(outcomes[0], PermanentDeliveryError) and "ATTACH_OVERSIZE" in outcomes[0].reason
    assert outcomes[1] is None and outcomes[3] is None
    # No person: refused before it is sent, and the others still go.
    assert isinstance(outcomes[2], PermanentDeliveryError) and "no person" in outcomes[2].reason
    [batch] = requests(simulator, "batch")
    assert len(batch["sub_calls"]) == 3
    assert sorted(n["user_id"] for n in simulator.control.notification_history()) == [503, 505]


def test_send_many_splits_at_fifty(simulator: RunningSimulator, client: RestClient) -> None:
    notices = [personal(503 + i % 3) for i in range(51)]  # the seeded people (an unknown one gets `false`)
    assert PersonalChannel(client, client_id="b24notify").send_many(notices) == [None] * 51
    assert len(requests(simulator, "batch")) == 2


def test_a_notice_without_a_person_is_never_sent(simulator: RunningSimulator, client: RestClient) -> None:
    with pytest.raises(PermanentDeliveryError, match="no person"):
        PersonalChannel(client, client_id="b24notify").send(personal(0))
    assert requests(simulator, "im.notify.system.add") == []


@pytest.mark.parametrize("code", ["USER_ID_EMPTY", "MESSAGE_EMPTY", "ATTACH_OVERSIZE", "ATTACH_ERROR",
                                  "WRONG_AUTH_TYPE"])
def test_refusals_are_permanent(simulator: RunningSimulator, client: RestClient, code: str) -> None:
    simulator.control.add_faults({"method": "im.notify.system.add", "error": code, "count": 1})
    with pytest.raises(PermanentDeliveryError, match=code):
        PersonalChannel(client, client_id="b24notify").send(personal())


def test_a_server_failure_is_retryable(simulator: RunningSimulator, client: RestClient) -> None:
    simulator.control.add_faults({"method": "im.notify.system.add", "error": "INTERNAL_SERVER_ERROR", "count": 1})
    with pytest.raises(RetryableDeliveryError) as caught:
        PersonalChannel(client, client_id="b24notify").send(personal())
    assert caught.value.transient and caught.value.uncertain


def test_classification_follows_the_chat_rules() -> None:
    assert isinstance(classify_notify_error(BudgetSpent(1.5)), DeliveryDeferred)
    assert isinstance(classify_notify_error(classify("100", status=400)), PermanentDeliveryError)  # REJECTED
    auth = classify_notify_error(classify("NO_AUTH_FOUND", status=401))
    assert isinstance(auth, RetryableDeliveryError) and not auth.transient
    bucket = classify_notify_error(classify("QUERY_LIMIT_EXCEEDED", status=503))
    assert isinstance(bucket, RetryableDeliveryError) and bucket.transient and not bucket.uncertain


# -- a portal that creates nothing ------------------------------------------------------------------


def _false_portal() -> Starlette:
    async def method(request: Request) -> JSONResponse:
        name = request.path_params["method"]
        if name == "batch":
            body = await request.json()
            keys = list(body["cmd"])
            results: dict[str, Any] = {key: (False if i == 0 else 90001 + i) for i, key in enumerate(keys)}
            return JSONResponse({"result": {"result": results, "result_error": [], "result_total": [],
                                            "result_next": [], "result_time": []}})
        return JSONResponse({"result": False})

    return Starlette(routes=[Route("/rest/1/code/{method}", method, methods=["POST"])])


@pytest.fixture
def false_portal() -> Iterator[RestClient]:
    with ThreadedServer(_false_portal()) as server, rest_client(f"{server.url}/rest/1/code/") as rest:
        yield rest


def test_false_means_nothing_was_created_and_is_permanent(false_portal: RestClient) -> None:
    channel = PersonalChannel(false_portal, client_id="b24notify")
    with pytest.raises(PermanentDeliveryError, match="created no notification for user 503"):
        channel.send(personal(503))

    outcomes = channel.send_many([personal(501), personal(502)])
    assert isinstance(outcomes[0], PermanentDeliveryError) and "user 501" in outcomes[0].reason
    assert outcomes[1] is None
