"""im.notify.system.add / im.notify.personal.add over real HTTP, and the per-user notification log of
the control API: a TAG is one slot per app for the whole portal, whoever the recipient."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from b24notify.devtools.simulator import RunningSimulator

from .conftest import Rest

APP = "b24notify"  # the CLIENT_ID a webhook caller names its app with


def _notify(rest: Rest, user_id: int, message: str, **extra: Any) -> int:
    return int(rest.call("im.notify.system.add", {"USER_ID": user_id, "MESSAGE": message, **extra}))


def _shown(sim: RunningSimulator, user_id: int) -> list[str]:
    return [n["message"] for n in sim.control.shown_notifications(user_id)]


def _oauth_call(sim: RunningSimulator, method: str, params: dict[str, Any], user_id: int = 1) -> httpx.Response:
    token = sim.authority.issue(sim.config.member_id, sim.domain, sim.client_endpoint, user_id)["access_token"]
    return httpx.post(f"{sim.client_endpoint}{method}", json={**params, "auth": token}, timeout=10)


def test_same_tag_to_the_same_user_replaces_the_earlier_one(rest: Rest, sim: RunningSimulator) -> None:
    first = _notify(rest, 503, "Result added", TAG="task-8001|503", CLIENT_ID=APP)
    second = _notify(rest, 503, "Result changed", TAG="task-8001|503", CLIENT_ID=APP)
    assert second > first
    assert _shown(sim, 503) == ["Result changed"]
    history = sim.control.notifications(503)[503]["history"]
    assert [(n["id"], n["removed"], n["replaced_by"]) for n in history] == [(first, True, second),
                                                                           (second, False, None)]


def test_same_tag_to_two_users_leaves_only_the_second(rest: Rest, sim: RunningSimulator) -> None:
    """The portal deletes by tag alone, across users: a TAG without the recipient in it loses
    the first person's notification."""
    anna = _notify(rest, 503, "For Anna", TAG="task-8001", CLIENT_ID=APP)
    boris = _notify(rest, 504, "For Boris", TAG="task-8001", CLIENT_ID=APP)
    log = sim.control.notifications()
    assert (log[503]["shown"], _shown(sim, 504)) == ([], ["For Boris"])
    [removed] = log[503]["history"]
    assert (removed["id"], removed["removed"], removed["replaced_by"]) == (anna, True, boris)


def test_different_tags_both_stay(rest: Rest, sim: RunningSimulator) -> None:
    _notify(rest, 503, "For Anna", TAG="task-8001|503", CLIENT_ID=APP)
    _notify(rest, 504, "For Boris", TAG="task-8001|504", CLIENT_ID=APP)
    _notify(rest, 503, "Another task", TAG="task-8002|503", CLIENT_ID=APP)
    assert (_shown(sim, 503), _shown(sim, 504)) == (["For Anna", "Another task"], ["For Boris"])


def test_untagged_notifications_never_replace_each_other(rest: Rest, sim: RunningSimulator) -> None:
    _notify(rest, 503, "one")
    _notify(rest, 503, "two", SUB_TAG="same", CLIENT_ID=APP)
    _notify(rest, 503, "three", SUB_TAG="same", CLIENT_ID=APP)  # SUB_TAG has no uniqueness check
    assert _shown(sim, 503) == ["one", "two", "three"]


def test_tags_of_different_apps_do_not_meet(rest: Rest, sim: RunningSimulator) -> None:
    _notify(rest, 503, "from b24notify", TAG="t", CLIENT_ID=APP)
    _notify(rest, 503, "from another app", TAG="t", CLIENT_ID="other-app")
    assert _shown(sim, 503) == ["from b24notify", "from another app"]
    first, second = sim.control.notifications(503)[503]["shown"]
    assert first["portal_tag"] != second["portal_tag"] and first["portal_tag"].endswith("|t")


def test_webhook_with_tag_or_sub_tag_but_no_client_id_fails(rest: Rest, sim: RunningSimulator) -> None:
    for extra in ({"TAG": "t"}, {"SUB_TAG": "s"}, {"TAG": "t", "CLIENT_ID": "  "}):
        answer = rest.post("im.notify.system.add", {"USER_ID": 503, "MESSAGE": "hi", **extra})
        assert (answer.status_code, answer.json()) == (
            403, {"error": "ACCESS_DENIED", "error_description": "Access denied! Client ID not specified"})
    assert sim.control.notifications() == {}


def test_oauth_calls_belong_to_the_app_and_need_no_client_id(rest: Rest, sim: RunningSimulator) -> None:
    first = _oauth_call(sim, "im.notify.system.add", {"USER_ID": 503, "MESSAGE": "app one", "TAG": "t"})
    # CLIENT_ID is ignored for an app: same app, same tag, so the first is replaced.
    second = _oauth_call(sim, "im.notify.system.add", {"USER_ID": 504, "MESSAGE": "app two", "TAG": "t",
                                                       "CLIENT_ID": "ignored"})
    assert (first.status_code, second.status_code) == (200, 200)
    # A webhook naming the app's client id is another namespace ("custom" + CLIENT_ID).
    _notify(rest, 503, "webhook", TAG="t", CLIENT_ID=sim.authority.client_id)
    log = sim.control.notifications()
    assert [n["message"] for n in log[503]["shown"]] == ["webhook"]
    assert [(n["message"], n["client_id"]) for n in log[504]["shown"]] == [("app two", sim.authority.client_id)]


def test_personal_notifications_carry_their_sender(rest: Rest, sim: RunningSimulator) -> None:
    answer = _oauth_call(sim, "im.notify.personal.add", {"USER_ID": 503, "MESSAGE": "  from Boris  "}, user_id=504)
    [shown] = sim.control.shown_notifications(503)
    assert (shown["id"], shown["kind"], shown["author_id"], shown["message"]) == (
        answer.json()["result"], "personal", 504, "from Boris")


@pytest.mark.parametrize(("params", "error"), [
    ({"MESSAGE": "hi"}, "USER_ID_EMPTY"),
    ({"USER_ID": 0, "MESSAGE": "hi"}, "USER_ID_EMPTY"),
    ({"USER_ID": "abc", "MESSAGE": "hi"}, "USER_ID_EMPTY"),
    ({"USER_ID": 503, "MESSAGE": "   "}, "MESSAGE_EMPTY"),
    ({"USER_ID": 503}, "MESSAGE_EMPTY"),
    ({"USER_ID": 503, "MESSAGE": "hi", "ATTACH": "not json"}, "ATTACH_ERROR"),
    ({"USER_ID": 503, "MESSAGE": "hi", "ATTACH": [{"MESSAGE": "x" * 30_001}]}, "ATTACH_OVERSIZE"),
])
def test_bad_notifications_are_400s(rest: Rest, sim: RunningSimulator, params: dict[str, Any], error: str) -> None:
    answer = rest.post("im.notify.system.add", params)
    assert (answer.status_code, answer.json()["error"]) == (400, error)
    assert sim.control.notification_history() == []


def test_unknown_user_answers_false(rest: Rest, sim: RunningSimulator) -> None:
    assert rest.call("im.notify.system.add", {"USER_ID": 999, "MESSAGE": "hi", "TAG": "t", "CLIENT_ID": APP}) is False
    assert sim.control.notification_history() == []


def test_message_is_trimmed_and_message_out_and_attach_are_kept(rest: Rest, sim: RunningSimulator) -> None:
    _notify(rest, 503, "  [b]Result[/b] closed \n", MESSAGE_OUT=" Result closed ", ATTACH='[{"MESSAGE": "x"}]')
    [shown] = sim.control.shown_notifications(503)
    assert (shown["message"], shown["message_out"], shown["attach"], shown["kind"]) == (
        "[b]Result[/b] closed", "Result closed", [{"MESSAGE": "x"}], "system")


def test_a_batch_of_50_notifications(rest: Rest, sim: RunningSimulator) -> None:
    """As the product sends them: one request, 50 form-encoded commands, each its own TAG."""
    users = [503, 504, 505]
    commands = {
        f"n{i}": "im.notify.system.add?" + urlencode({
            "USER_ID": users[i % 3], "MESSAGE": f"[b]Change {i}[/b] & more", "TAG": f"b24n|{i}|{users[i % 3]}",
            "SUB_TAG": "b24n", "CLIENT_ID": APP})
        for i in range(50)
    }
    answer = rest.call("batch", {"halt": 0, "cmd": commands})
    assert answer["result_error"] == []
    ids = [answer["result"][f"n{i}"] for i in range(50)]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 50
    log = sim.control.notifications()
    assert sum(len(entry["shown"]) for entry in log.values()) == 50
    assert log[504]["shown"][0]["message"] == "[b]Change 1[/b] & more"
    [batch_call] = sim.control.calls("im.notify.system.add")["calls"]
    assert len(batch_call["sub_calls"]) == 50


def test_a_batch_can_replace_within_itself(rest: Rest, sim: RunningSimulator) -> None:
    commands = [f"im.notify.system.add?USER_ID={u}&MESSAGE=m{u}&TAG=same&CLIENT_ID={APP}" for u in (503, 504)]
    commands.append("im.notify.system.add?USER_ID=505&MESSAGE=x&TAG=t&SUB_TAG=s")  # no CLIENT_ID
    answer = rest.call("batch", {"cmd": commands})
    assert answer["result_error"]["2"]["error"] == "ACCESS_DENIED"
    assert (_shown(sim, 503), _shown(sim, 504), _shown(sim, 505)) == ([], ["m504"], [])


def test_log_filter_by_user_and_reset(rest: Rest, sim: RunningSimulator) -> None:
    _notify(rest, 503, "for Anna")
    assert sim.control.notifications(505) == {505: {"shown": [], "history": []}}
    assert list(sim.control.notifications(503)) == [503]
    raw = httpx.get(f"{sim.base_url}/_sim/notifications", params={"user": "anna"})
    assert raw.status_code == 400
    sim.control.reset()
    assert sim.control.notifications() == {} and sim.control.notification_history() == []
