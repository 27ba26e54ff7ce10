"""Users over real HTTP: made and changed through the control API, read with user.get, and each able
to have an incoming webhook of their own."""

from __future__ import annotations

import httpx

from b24notify.devtools.simulator import RunningSimulator

from .conftest import Rest


def test_control_adds_users_with_or_without_an_email(rest: Rest, sim: RunningSimulator) -> None:
    added = sim.control.add_user("Dina", "Petrova", "")
    assert added == {"id": 506, "name": "Dina", "last_name": "Petrova", "email": "", "active": True}
    [dina] = rest.call("user.get", {"ID": 506})
    assert (dina["NAME"], dina["LAST_NAME"], dina["EMAIL"], dina["ACTIVE"]) == ("Dina", "Petrova", "", True)
    chosen = sim.control.add_user("Egor", user_id=900, active=False)
    assert (chosen["id"], chosen["active"]) == (900, False)
    assert [u["id"] for u in sim.control.users()] == [1, 503, 504, 505, 506, 900]


def test_control_updates_a_user(rest: Rest, sim: RunningSimulator) -> None:
    changed = sim.control.update_user(504, email="boris@new.example", last_name="Ivanov-Petrov")
    assert (changed["name"], changed["last_name"], changed["email"], changed["active"]) == (
        "Boris", "Ivanov-Petrov", "boris@new.example", True)
    [boris] = rest.call("user.get", {"ID": 504})
    assert (boris["LAST_NAME"], boris["EMAIL"]) == ("Ivanov-Petrov", "boris@new.example")
    assert sim.control.update_user(504, email="")["email"] == ""


def test_a_dismissed_user_is_still_read_by_id_with_active_false(rest: Rest, sim: RunningSimulator) -> None:
    """user.get has no ACTIVE condition of its own; only ``ACTIVE: true`` leaves dismissed users out."""
    sim.control.update_user(504, active=False)
    [boris] = rest.call("user.get", {"ID": 504})
    assert (boris["ID"], boris["ACTIVE"]) == ("504", False)
    assert rest.call("user.get", {"FILTER": {"ID": [504], "ACTIVE": True}}) == []
    assert [u["ID"] for u in rest.call("user.get", {"ACTIVE": "Y"})] == ["1", "503", "505"]
    sim.control.update_user(504, active=True)
    assert rest.call("user.get", {"ID": 504})[0]["ACTIVE"] is True


def test_bad_user_requests_are_refused(sim: RunningSimulator) -> None:
    users = f"{sim.base_url}/_sim/users"
    assert httpx.post(f"{users}/999", json={"active": False}).status_code == 404
    assert httpx.post(f"{users}/504", json={"active": "no"}).status_code == 400
    assert httpx.patch(f"{users}/504", json={"nickname": "b"}).status_code == 400
    assert httpx.post(f"{users}/504", json={"id": 7}).status_code == 400
    assert httpx.post(users, json={"name": " "}).status_code == 400
    assert httpx.post(users, json={"name": "Twin", "id": 503}).status_code == 409
    assert httpx.post(users, json={"name": "Bad", "email": 5}).status_code == 400
    assert [u["name"] for u in sim.control.users() if u["id"] == 504] == ["Boris"]


def test_a_user_webhook_acts_as_that_user(sim: RunningSimulator) -> None:
    url = sim.webhook_url_for(504)
    assert url == sim.control.webhook_url(504)  # made once
    assert url.startswith(f"{sim.base_url}/rest/504/") and url != sim.webhook_url
    with Rest(url) as boris:
        task = boris.call("tasks.task.add", {"fields": {"TITLE": "By Boris"}})["task"]
        assert (task["createdBy"], task["responsibleId"]) == ("504", "504")
        boris.call("tasks.task.complete", {"taskId": task["id"]})
        assert boris.call("tasks.task.get", {"taskId": task["id"]})["task"]["closedBy"] == "504"
        assert boris.call("profile")["ID"] == "504"
    calls = sim.control.calls("tasks.task.add")["calls"]
    assert [c["user_id"] for c in calls] == [504]
    listed = httpx.get(f"{sim.base_url}/_sim/webhooks").json()["webhooks"]
    assert [w["user_id"] for w in listed] == [1, 504]


def test_webhooks_need_the_right_code_and_a_known_user(sim: RunningSimulator) -> None:
    sim.webhook_url_for(504)
    # user 504's path with the admin's code, and an unknown user, are both refused
    assert httpx.post(f"{sim.base_url}/rest/504/{sim.config.webhook_code}/profile").status_code == 401
    assert httpx.post(f"{sim.base_url}/rest/abc/{sim.config.webhook_code}/profile").status_code == 401
    assert httpx.post(f"{sim.base_url}/_sim/webhooks", json={"user_id": 999}).status_code == 404
    assert httpx.post(f"{sim.base_url}/_sim/webhooks", json={}).status_code == 400


def test_reset_forgets_the_extra_webhooks_and_users(sim: RunningSimulator) -> None:
    url = sim.webhook_url_for(505)
    sim.control.add_user("Dina")
    sim.control.reset()
    assert httpx.post(f"{url}profile").status_code == 401
    assert [u["id"] for u in sim.control.users()] == [1, 503, 504, 505]
    with Rest(sim.webhook_url) as admin:
        assert admin.call("profile")["ID"] == "1"
