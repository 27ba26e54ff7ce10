"""The chat channel against the simulator: a notice goes to its own dialog, batches mix dialogs, and
the look-up before a doubtful resend reads each dialog once, in one request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from b24notify.alerts import sample_alert
from b24notify.channels.base import Channel, PermanentDeliveryError, RetryableDeliveryError
from b24notify.channels.chat import ChatChannel
from b24notify.channels.content import chat_text
from b24notify.devtools.simulator import RunningSimulator
from b24notify.diff import ChangeKind
from b24notify.notices import Notice, Target
from b24notify.rest.client import Backoff, RestClient
from b24notify.settings import parse_webhook_url


@pytest.fixture
def client(simulator: RunningSimulator) -> Iterator[RestClient]:
    with RestClient(parse_webhook_url(simulator.webhook_url), timeout=5, backoff=Backoff(attempts=1)) as rest:
        yield rest


def chat_notice(dialog: str = "chat42", *kinds: ChangeKind, language: str = "en") -> Notice:
    alerts = tuple(sample_alert(kind) for kind in kinds or (ChangeKind.NEW,))
    return Notice(alerts, Target("chat", dialog), language)


def posted(simulator: RunningSimulator) -> list[tuple[str, str]]:
    return [(str(m["dialog_id"]), str(m["message"])) for m in simulator.control.messages()]


def requests(simulator: RunningSimulator, method: str) -> list[dict[str, Any]]:
    return list(simulator.control.calls(method)["calls"])


def test_chat_channel_is_a_channel(client: RestClient) -> None:
    channel: Channel = ChatChannel(client, send_seconds=7)
    assert channel.name == "chat" and channel.send_seconds == 7


def test_a_notice_goes_to_its_own_dialog(simulator: RunningSimulator, client: RestClient) -> None:
    channel = ChatChannel(client)
    first, second = chat_notice("chat42"), chat_notice("503", ChangeKind.CLOSED)
    channel.send(first)
    channel.send(second)

    assert posted(simulator) == [("chat42", chat_text(first)), ("503", chat_text(second))]
    assert requests(simulator, "im.message.add")[0]["params"]["URL_PREVIEW"] == "N"


def test_send_many_is_one_batch_across_dialogs_each_with_its_own_outcome(
        simulator: RunningSimulator, client: RestClient) -> None:
    notices = [chat_notice("chat42"), chat_notice("not a dialog"), chat_notice("sg7", ChangeKind.CLOSED)]

    outcomes = ChatChannel(client).send_many(notices)

    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], PermanentDeliveryError) and "CHAT_ID" in outcomes[1].reason
    assert [dialog for dialog, _ in posted(simulator)] == ["chat42", "sg7"]
    assert len(requests(simulator, "batch")) == 1


def test_send_many_splits_at_fifty(simulator: RunningSimulator, client: RestClient) -> None:
    notices = [chat_notice(f"chat{100 + i}") for i in range(51)]
    assert ChatChannel(client).send_many(notices) == [None] * 51
    assert len(requests(simulator, "batch")) == 2
    assert len(posted(simulator)) == 51


def test_a_digest_is_one_message(simulator: RunningSimulator, client: RestClient) -> None:
    # Needs render_chat(alerts, language) from the render change (helper R).
    digest = chat_notice("chat42", ChangeKind.NEW, ChangeKind.CLOSED)
    ChatChannel(client).send(digest)
    assert posted(simulator) == [("chat42", chat_text(digest))]


def test_find_posted_reads_one_dialog_with_one_call(simulator: RunningSimulator, client: RestClient) -> None:
    channel = ChatChannel(client)
    sent, unsent = chat_notice("chat42"), chat_notice("chat42", ChangeKind.CLOSED)
    channel.send(sent)

    assert channel.find_posted([sent, unsent]) == {sent.key}
    [lookup] = requests(simulator, "im.dialog.messages.get")
    assert lookup["params"] == {"DIALOG_ID": "chat42", "LIMIT": 50}
    assert not requests(simulator, "batch")


def test_find_posted_reads_each_dialog_once_in_one_request(simulator: RunningSimulator, client: RestClient) -> None:
    channel = ChatChannel(client)
    in_42, in_sg7 = chat_notice("chat42"), chat_notice("sg7", ChangeKind.CLOSED)
    # The same text in another dialog is not "posted" for this one.
    elsewhere = chat_notice("chat43", ChangeKind.CLOSED)
    never = chat_notice("chat42", ChangeKind.EDITED)
    channel.send(in_42)
    channel.send(in_sg7)
    channel.send(chat_notice("chat44", ChangeKind.CLOSED))

    assert channel.find_posted([in_42, never, in_sg7, elsewhere]) == {in_42.key, in_sg7.key}
    [batch] = requests(simulator, "batch")
    assert sorted(sub["method"] for sub in batch["sub_calls"]) == ["im.dialog.messages.get"] * 3


def test_a_dialog_whose_read_fails_counts_as_holding_nothing(simulator: RunningSimulator, client: RestClient) -> None:
    channel = ChatChannel(client)
    sent = chat_notice("chat42")
    channel.send(sent)
    # A dialog id the read refuses (the simulator: DIALOG_ID_EMPTY for a blank one) fails only its own part.
    assert channel.find_posted([sent, chat_notice(" ")]) == {sent.key}


def test_find_posted_across_languages_compares_the_rendered_text(
        simulator: RunningSimulator, client: RestClient) -> None:
    # Needs render_chat(alerts, language) from the render change (helper R).
    channel = ChatChannel(client)
    english, russian = chat_notice("chat42", language="en"), chat_notice("chat42", language="ru")
    channel.send(russian)
    assert channel.find_posted([english, russian]) == {russian.key}


def test_a_refused_message_is_permanent_and_a_lost_answer_uncertain(
        simulator: RunningSimulator, client: RestClient) -> None:
    channel = ChatChannel(client)
    with pytest.raises(PermanentDeliveryError, match="CHAT_ID"):
        channel.send(chat_notice("not a dialog"))

    simulator.control.add_faults({"method": "im.message.add", "network": "drop_after", "count": 1})
    with pytest.raises(RetryableDeliveryError) as caught:
        channel.send(chat_notice("chat42"))
    assert caught.value.uncertain
    assert len(posted(simulator)) == 1  # it was posted: the next attempt looks first
