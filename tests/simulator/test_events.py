"""Outbound events: the wire shape of docs/protocol.md §1-2, no events for pinning, and seeded chaos."""

from __future__ import annotations

import time
from typing import Any

import pytest

from b24notify.devtools.simulator import RunningSimulator

from .conftest import EventReceiver, Rest, SimulatorFactory, wait_until


def _settle(sim: RunningSimulator) -> None:
    assert sim.control.wait_events(timeout=5.0), "events still queued"


def test_result_comment_fires_one_comment_add_in_the_derived_shape(
    rest: Rest, sim: RunningSimulator, receiver: EventReceiver
) -> None:
    task_id = rest.add_task()
    _settle(sim)
    before = len(receiver.events)
    comment_id = rest.add_comment(task_id, "Signed", as_result=True)
    _settle(sim)

    new = receiver.events[before:]
    assert [e.form["event"] for e in new] == ["ONTASKCOMMENTADD"]
    [event] = new
    assert event.content_type == "application/x-www-form-urlencoded"
    assert event.body.startswith("event=ONTASKCOMMENTADD&event_handler_id=1&data%5BFIELDS_BEFORE%5D=undefined"
                                 f"&data%5BFIELDS_AFTER%5D%5BID%5D={comment_id}&")
    assert event.pairs[:7] == [
        ("event", "ONTASKCOMMENTADD"),
        ("event_handler_id", "1"),
        ("data[FIELDS_BEFORE]", "undefined"),
        ("data[FIELDS_AFTER][ID]", str(comment_id)),
        ("data[FIELDS_AFTER][TASK_ID]", str(task_id)),
        ("data[IS_ACCESSIBLE_BEFORE]", "N"),
        ("data[IS_ACCESSIBLE_AFTER]", "undefined"),
    ]
    assert event.pairs[7][0] == "ts" and abs(int(event.pairs[7][1]) - time.time()) < 60
    assert event.pairs[8:] == [
        ("auth[domain]", sim.domain),
        ("auth[client_endpoint]", f"http://{sim.domain}/rest/"),
        ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"),
        ("auth[member_id]", sim.config.member_id),
        ("auth[application_token]", "test-app-token"),
    ]


def test_pinning_a_comment_fires_no_event(rest: Rest, sim: RunningSimulator, receiver: EventReceiver) -> None:
    task_id = rest.add_task()
    comment_id = rest.add_comment(task_id, "Plain comment")
    _settle(sim)
    before = (len(receiver.events), len(sim.control.events()))

    rest.call("tasks.task.result.addFromComment", {"commentId": comment_id})
    rest.call("tasks.task.result.deleteFromComment", {"commentId": comment_id})
    _settle(sim)

    assert (len(receiver.events), len(sim.control.events())) == before


def _data(event: Any) -> dict[str, str]:
    return {k: v for k, v in event.pairs if k.startswith("data[")}


def test_task_events_carry_ids_only(rest: Rest, sim: RunningSimulator, receiver: EventReceiver) -> None:
    task_id = rest.add_task()
    rest.call("tasks.task.update", {"taskId": task_id, "fields": {"TITLE": "Renamed"}})
    rest.call("tasks.task.delete", {"taskId": task_id})
    _settle(sim)
    add, update, delete = receiver.events
    t = str(task_id)
    assert _data(add) == {"data[FIELDS_BEFORE]": "undefined", "data[FIELDS_AFTER][ID]": t,
                          "data[IS_ACCESSIBLE_BEFORE]": "N", "data[IS_ACCESSIBLE_AFTER]": "undefined"}
    assert _data(update) == {"data[FIELDS_BEFORE][ID]": t, "data[FIELDS_AFTER][ID]": t,
                             "data[IS_ACCESSIBLE_BEFORE]": "undefined", "data[IS_ACCESSIBLE_AFTER]": "undefined"}
    assert _data(delete) == {"data[FIELDS_BEFORE][ID]": t, "data[FIELDS_AFTER]": "undefined",
                             "data[IS_ACCESSIBLE_BEFORE]": "undefined", "data[IS_ACCESSIBLE_AFTER]": "N"}
    assert [e.form["event"] for e in receiver.events] == ["ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE"]


def test_completing_fires_update_after_results_are_closed(
    rest: Rest, sim: RunningSimulator, receiver: EventReceiver
) -> None:
    task_id = rest.add_task()
    rest.add_comment(task_id, "Signed", as_result=True)
    rest.call("tasks.task.complete", {"taskId": task_id})
    _settle(sim)
    assert receiver.events[-1].form["event"] == "ONTASKUPDATE"
    assert [r["status"] for r in rest.results(task_id)] == [1]


def test_comment_edit_and_delete_events_in_the_old_card(
    rest: Rest, sim: RunningSimulator, receiver: EventReceiver
) -> None:
    task_id = rest.add_task()
    comment_id = rest.add_comment(task_id)
    rest.call("task.commentitem.update", {"TASKID": task_id, "ITEMID": comment_id, "FIELDS": {"POST_MESSAGE": "x"}})
    rest.call("task.commentitem.delete", {"TASKID": task_id, "ITEMID": comment_id})
    _settle(sim)
    update, delete = receiver.named("ONTASKCOMMENTUPDATE") + receiver.named("ONTASKCOMMENTDELETE")
    assert _data(update)["data[FIELDS_AFTER][ACTION]"] == "EDIT"
    assert _data(delete)["data[FIELDS_AFTER][ACTION]"] == "DEL"
    assert _data(delete)["data[FIELDS_BEFORE][ID]"] == str(comment_id)


def test_new_card_comment_event_has_id_zero_and_message_id(
    rest: Rest, sim: RunningSimulator, receiver: EventReceiver
) -> None:
    sim.control.configure(new_card=True)
    task_id = rest.add_task()
    comment_id = rest.add_comment(task_id, "Signed", as_result=True)
    rest.call("task.commentitem.update", {"TASKID": task_id, "ITEMID": comment_id, "FIELDS": {"POST_MESSAGE": "x"}})
    rest.call("task.commentitem.delete", {"TASKID": task_id, "ITEMID": comment_id})
    _settle(sim)

    [added] = receiver.named("ONTASKCOMMENTADD")
    data = _data(added)
    assert (data["data[FIELDS_AFTER][ID]"], data["data[FIELDS_AFTER][TASK_ID]"]) == ("0", str(task_id))
    assert int(data["data[FIELDS_AFTER][MESSAGE_ID]"]) > 0
    assert [k for k, _ in added.pairs if k.startswith("data[FIELDS_AFTER]")] == [
        "data[FIELDS_AFTER][ID]", "data[FIELDS_AFTER][TASK_ID]", "data[FIELDS_AFTER][MESSAGE_ID]"]
    # The new card fires no comment update/delete events (docs/protocol.md §2).
    assert receiver.named("ONTASKCOMMENTUPDATE") == receiver.named("ONTASKCOMMENTDELETE") == []


def test_new_card_results_report_comment_id_zero(rest: Rest, sim: RunningSimulator) -> None:
    sim.control.configure(new_card=True)
    task_id = rest.add_task()
    rest.add_comment(task_id, "Signed", as_result=True)
    assert [r["commentId"] for r in rest.results(task_id)] == [0]


def test_without_a_handler_events_are_logged_not_sent(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator()
    with Rest(sim.webhook_url) as rest:
        rest.add_task()
    [event] = sim.control.events()
    assert (event["event"], event["outcome"]) == ("ONTASKADD", "no_handler")


def test_a_failed_delivery_is_logged_and_never_retried(
    rest: Rest, sim: RunningSimulator, receiver: EventReceiver
) -> None:
    receiver.status = 500
    rest.add_task()
    _settle(sim)
    assert len(receiver.events) == 1
    [event] = sim.control.events()
    assert (event["outcome"], event["status_code"]) == ("rejected", 500)

    sim.control.configure(handler_url="http://127.0.0.1:9/unreachable")
    rest.add_task()
    _settle(sim)
    unreachable = sim.control.events()[-1]
    assert (unreachable["outcome"], unreachable["error"]) == ("failed", "ConnectError")
    assert len(receiver.events) == 1


def _chaos_run(start_simulator: SimulatorFactory, receiver: EventReceiver, **chaos: Any) -> list[tuple[Any, ...]]:
    sim = start_simulator(handler_url=receiver.url, seed=2, **chaos)
    with Rest(sim.webhook_url) as rest:
        task_id = rest.add_task()
        for i in range(12):
            rest.add_comment(task_id, f"comment {i}")
    _settle(sim)
    return [(e["seq"], e["event"], e["copy"], e["delay_ms"], e["outcome"]) for e in sim.control.events()]


def test_event_chaos_replays_exactly_for_the_same_seed(
    start_simulator: SimulatorFactory, receiver: EventReceiver
) -> None:
    chaos = {"event_drop_probability": 0.3, "event_duplicate_probability": 0.3, "event_reorder_max_ms": 20}
    first = _chaos_run(start_simulator, receiver, **chaos)
    sent_first = len(receiver.events)
    second = _chaos_run(start_simulator, receiver, **chaos)

    assert first == second
    outcomes = [outcome for *_, outcome in first]
    assert "dropped" in outcomes and "sent" in outcomes
    assert any(copy == 2 for _, _, copy, _, _ in first)
    assert len(receiver.events) == 2 * sent_first == 2 * outcomes.count("sent")


@pytest.mark.parametrize(("chaos", "copies_received"), [
    ({"event_drop_probability": 1.0}, 0),
    ({"event_duplicate_probability": 1.0}, 2),
])
def test_drop_and_duplicate_chaos(
    start_simulator: SimulatorFactory, receiver: EventReceiver, chaos: dict[str, float], copies_received: int
) -> None:
    sim = start_simulator(handler_url=receiver.url, **chaos)
    with Rest(sim.webhook_url) as rest:
        rest.add_task()
    _settle(sim)
    assert len(receiver.events) == copies_received
    if copies_received == 2:
        assert receiver.events[0].body == receiver.events[1].body


def test_reordered_events_all_arrive(start_simulator: SimulatorFactory, receiver: EventReceiver) -> None:
    sim = start_simulator(handler_url=receiver.url, seed=3, event_reorder_max_ms=40)
    with Rest(sim.webhook_url) as rest:
        task_id = rest.add_task()
        comment_ids = [rest.add_comment(task_id, f"c{i}") for i in range(8)]
    wait_until(lambda: len(receiver.events) == 9, what="all nine events")
    received = [int(e.form["data[FIELDS_AFTER][ID]"]) for e in receiver.named("ONTASKCOMMENTADD")]
    assert sorted(received) == comment_ids
