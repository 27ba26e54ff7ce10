"""The people of a task over real HTTP: creator, responsible, accomplices, auditors, and who closed it
(``closedBy``), as tasks.task.get/list show them to the product."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from b24notify.devtools.simulator import RunningSimulator
from tests.support.portal_user import PortalUser

from .conftest import Rest

# What the product selects (b24notify/workers/portal_reads.py TASK_FIELDS).
PRODUCT_SELECT = ["ID", "TITLE", "RESPONSIBLE_ID", "GROUP_ID", "STATUS", "CREATED_BY", "ACCOMPLICES", "AUDITORS",
                  "CLOSED_BY"]


@pytest.fixture
def user(sim: RunningSimulator) -> Iterator[PortalUser]:
    person = PortalUser(sim.webhook_url)
    yield person
    person.close()


def _get(rest: Rest, task_id: int, select: list[str] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"taskId": task_id}
    if select is not None:
        params["select"] = select
    return dict(rest.call("tasks.task.get", params)["task"])


def test_people_through_the_products_select(rest: Rest) -> None:
    task_id = rest.add_task("Sign", CREATED_BY=505, RESPONSIBLE_ID=503, ACCOMPLICES=[504, 505], AUDITORS=["1"],
                            GROUP_ID=7)
    task = _get(rest, task_id, PRODUCT_SELECT)
    assert {k: task[k] for k in ("id", "title", "responsibleId", "groupId", "status", "createdBy", "accomplices",
                                 "auditors", "closedBy")} == {
        "id": str(task_id), "title": "Sign", "responsibleId": "503", "groupId": "7", "status": "2",
        "createdBy": "505", "accomplices": ["504", "505"], "auditors": ["1"], "closedBy": "0"}
    assert set(task["accomplicesData"]) == {"504", "505"}
    assert task["auditorsData"] == {"1": {"id": "1", "name": "Admin", "link": "/company/personal/user/1/",
                                          "icon": "", "workPosition": ""}}


def test_a_task_without_people_shows_empty_lists_and_closed_by_zero(rest: Rest) -> None:
    task = _get(rest, rest.add_task())
    assert (task["accomplices"], task["auditors"], task["closedBy"]) == ([], [], "0")
    assert (task["accomplicesData"], task["auditorsData"]) == ([], [])


def test_select_leaves_out_what_was_not_asked_for(rest: Rest) -> None:
    task_id = rest.add_task(AUDITORS=[504])
    assert _get(rest, task_id, ["AUDITORS"]) == {"id": str(task_id), "auditors": ["504"], "auditorsData": {
        "504": {"id": "504", "name": "Boris Ivanov", "link": "/company/personal/user/504/", "icon": "",
                "workPosition": ""}}}
    assert _get(rest, task_id, ["CLOSED_BY"]) == {"id": str(task_id), "closedBy": "0"}
    assert "accomplices" in _get(rest, task_id, ["*"])


def test_update_replaces_people_and_keeps_them_when_not_named(rest: Rest) -> None:
    task_id = rest.add_task(ACCOMPLICES=[504], AUDITORS=[505])
    rest.call("tasks.task.update", {"taskId": task_id, "fields": {"ACCOMPLICES": [503, 503, 504]}})
    task = _get(rest, task_id)
    assert (task["accomplices"], task["auditors"]) == (["503", "504"], ["505"])
    rest.call("tasks.task.update", {"taskId": task_id, "fields": {"AUDITORS": [], "CREATED_BY": 504}})
    task = _get(rest, task_id)
    assert (task["accomplices"], task["auditors"], task["createdBy"]) == (["503", "504"], [], "504")


def test_people_arrive_form_encoded_and_in_a_batch(rest: Rest) -> None:
    created = rest.http.post("tasks.task.add", data={"fields[TITLE]": "Form", "fields[AUDITORS][]": ["504", "505"],
                                                     "fields[ACCOMPLICES][0]": "503"})
    task_id = int(created.json()["result"]["task"]["id"])
    assert (_get(rest, task_id)["auditors"], _get(rest, task_id)["accomplices"]) == (["504", "505"], ["503"])
    query = urlencode({"fields[TITLE]": "Batched", "fields[AUDITORS][0]": 503})
    answer = rest.call("batch", {"cmd": {"t": f"tasks.task.add?{query}"}})
    assert answer["result"]["t"]["task"]["auditors"] == ["503"]


def test_a_bad_person_id_is_a_type_error(rest: Rest) -> None:
    answer = rest.post("tasks.task.add", {"fields": {"TITLE": "x", "AUDITORS": ["boris"]}})
    assert (answer.status_code, answer.json()["error"]) == (400, "100")


def test_closed_by_is_who_completed_and_clears_on_renew(rest: Rest, user: PortalUser) -> None:
    task_id = user.add_task(responsible=503, created_by=1, accomplices=[504], auditors=[505])
    user.complete(task_id, by=504)
    task = _get(rest, task_id, PRODUCT_SELECT)
    assert (task["status"], task["closedBy"]) == ("5", "504")
    assert _get(rest, task_id)["closedDate"] is not None
    user.renew(task_id, by=503)
    task = _get(rest, task_id)
    assert (task["status"], task["closedBy"], task["closedDate"]) == ("2", "0", None)
    user.complete(task_id)  # the webhook's own user
    assert _get(rest, task_id)["closedBy"] == "1"


def test_status_4_closes_too_and_a_repeated_status_keeps_the_closer(rest: Rest, user: PortalUser) -> None:
    """``CTasks::Update``: a change to 4 or 5 sets CLOSED_BY; an update that leaves the status alone
    changes nothing."""
    task_id = user.add_task()
    user.update(task_id, STATUS=4, by=503)
    assert _get(rest, task_id)["closedBy"] == "503"
    user.update(task_id, TITLE="Renamed", by=505)
    user.complete(task_id, by=504)
    assert _get(rest, task_id)["closedBy"] == "504"
    user.complete(task_id, by=505)  # already completed: no status change
    assert _get(rest, task_id)["closedBy"] == "504"


def test_task_list_shows_and_filters_people(rest: Rest) -> None:
    first = rest.add_task("one", ACCOMPLICES=[504], AUDITORS=[505])
    second = rest.add_task("two", AUDITORS=[504])
    rest.call("tasks.task.complete", {"taskId": second})

    def ids(filter_: dict[str, Any]) -> list[int]:
        tasks = rest.call("tasks.task.list", {"filter": filter_, "select": PRODUCT_SELECT})["tasks"]
        return [int(t["id"]) for t in tasks]

    assert ids({"ACCOMPLICE": 504}) == [first]
    assert ids({"AUDITOR": [504, 505]}) == [first, second]
    assert ids({"!AUDITOR": 504}) == [first]
    assert ids({"CLOSED_BY": 1}) == [second]
    [listed, _] = rest.call("tasks.task.list", {"select": PRODUCT_SELECT})["tasks"]
    assert (listed["accomplices"], listed["auditors"], listed["closedBy"]) == (["504"], ["505"], "0")


def test_portal_user_helpers(sim: RunningSimulator, user: PortalUser) -> None:
    task_id = user.add_task("People", responsible=504, created_by=505, accomplices=[503], auditors=[1, 504],
                            group_id=12)
    task = user.task(task_id, PRODUCT_SELECT)
    assert (task["createdBy"], task["responsibleId"], task["groupId"], task["accomplices"], task["auditors"]) == (
        "505", "504", "12", ["503"], ["1", "504"])
    assert user.add_task(group=3) and user.task(user.add_task(group=3, group_id=4))["groupId"] == "4"
    comment = user.comment(task_id, "Signed")
    assert user.pin(comment, by=503)["createdBy"] == 503
    user.complete(task_id, by=503)
    assert user.task(task_id, ["CLOSED_BY"])["closedBy"] == "503"
    calls = sim.control.calls("tasks.task.complete")["calls"]
    assert [(c["auth"], c["user_id"]) for c in calls] == [("webhook", 503)]
