"""The REST methods, over real HTTP, as b24notify sees them."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from b24notify.devtools.simulator import RunningSimulator

from .conftest import Rest


def test_task_get_answers_strings_like_the_portal(rest: Rest) -> None:
    task_id = rest.add_task("Sign the contract", RESPONSIBLE_ID=503, GROUP_ID=12)
    task = rest.call("tasks.task.get", {"taskId": task_id})["task"]
    assert task["id"] == str(task_id)
    assert (task["title"], task["responsibleId"], task["createdBy"], task["groupId"], task["status"]) == (
        "Sign the contract", "503", "1", "12", "2")
    assert datetime.fromisoformat(task["changedDate"]).utcoffset() is not None
    assert task["chatId"].isdigit()


def test_task_get_of_a_missing_task_is_an_empty_array(rest: Rest) -> None:
    assert rest.call("tasks.task.get", {"taskId": 999999}) == []


def test_task_get_select_and_result_info(rest: Rest) -> None:
    task_id = rest.add_task()
    rest.add_comment(task_id, "Signed", as_result=True)
    task = rest.call("tasks.task.get", {"taskId": task_id, "select": ["TITLE"],
                                        "params": {"WITH_RESULT_INFO": "Y"}})["task"]
    assert task == {"id": str(task_id), "title": "Sign the contract", "taskRequireResult": "N",
                    "taskHasResult": "Y", "taskHasOpenResult": "Y"}
    rest.call("tasks.task.complete", {"taskId": task_id})
    task = rest.call("tasks.task.get", {"taskId": task_id, "params": {"WITH_RESULT_INFO": "Y"}})["task"]
    assert (task["status"], task["taskHasOpenResult"]) == ("5", "N")


def test_task_list_filters_by_changed_date_and_status(rest: Rest) -> None:
    first, second = rest.add_task("one"), rest.add_task("two")
    rest.call("tasks.task.complete", {"taskId": second})
    changed = rest.call("tasks.task.get", {"taskId": second})["task"]["changedDate"]
    later = (datetime.fromisoformat(changed) + timedelta(seconds=1)).isoformat()

    def ids(filter_: dict[str, object]) -> list[int]:
        return [int(t["id"]) for t in rest.call("tasks.task.list", {"filter": filter_})["tasks"]]

    assert ids({">=CHANGED_DATE": changed}) == [first, second]
    assert ids({">CHANGED_DATE": later}) == []
    assert ids({"STATUS": 5}) == [second]
    assert ids({"!STATUS": 5}) == [first]
    assert ids({"ID": [first]}) == [first]


def test_task_list_pages_by_50(rest: Rest) -> None:
    # One batch of 50 adds plus one more: 51 tasks, with only two requests against the bucket.
    rest.call("batch", {"cmd": {f"t{i}": f"tasks.task.add?fields[TITLE]=task {i}" for i in range(50)}})
    rest.add_task("the 51st")
    first_page = rest.post("tasks.task.list", {"select": ["ID"]}).json()
    assert (len(first_page["result"]["tasks"]), first_page["total"], first_page["next"]) == (50, 51, 50)
    second_page = rest.post("tasks.task.list", {"start": 50}).json()
    assert [t["title"] for t in second_page["result"]["tasks"]] == ["the 51st"]
    assert "next" not in second_page


def test_result_list_errors_are_the_old_v2_codes(rest: Rest) -> None:
    missing = rest.post("tasks.task.result.list", {"taskId": 999999})
    assert (missing.status_code, missing.json()) == (400, {"error": "0", "error_description": "Access denied."})
    wrong_type = rest.post("tasks.task.result.list", {"taskId": "abc"})
    assert (wrong_type.status_code, wrong_type.json()["error"]) == (400, "100")


def test_result_list_shape_matches_the_seed(rest: Rest) -> None:
    task_id = rest.add_task()
    comment_id = rest.add_comment(task_id, "respond on [B]Monday[/B]", as_result=True, author=503)
    [result] = rest.results(task_id)
    assert set(result) == {"id", "taskId", "commentId", "createdBy", "createdAt", "updatedAt", "status", "text",
                           "formattedText", "files"}
    assert (result["taskId"], result["commentId"], result["createdBy"], result["status"]) == (
        task_id, comment_id, 503, 0)
    assert result["formattedText"] == "respond on <b>Monday</b>"
    assert result["files"] == []
    assert result["createdAt"].endswith("+00:00")


def test_open_result_cannot_be_pinned_again_over_rest(rest: Rest) -> None:
    task_id = rest.add_task()
    comment_id = rest.add_comment(task_id, as_result=True)
    again = rest.post("tasks.task.result.addFromComment", {"commentId": comment_id})
    assert (again.status_code, again.json()) == (400, {"error": "0", "error_description": "Result already exists."})
    rest.call("tasks.task.complete", {"taskId": task_id})
    pinned = rest.call("tasks.task.result.addFromComment", {"commentId": comment_id})
    assert (pinned["commentId"], pinned["status"], pinned["files"]) == (comment_id, 1, None)


def test_unpinning_removes_the_result_but_not_the_comment(rest: Rest, sim: RunningSimulator) -> None:
    task_id = rest.add_task()
    comment_id = rest.add_comment(task_id, as_result=True)
    assert rest.call("tasks.task.result.deleteFromComment", {"commentId": comment_id}) is None
    assert rest.results(task_id) == []
    assert [c["id"] for c in sim.control.state()["comments"]] == [comment_id]


def test_user_get_by_id_and_by_filter(rest: Rest, sim: RunningSimulator) -> None:
    [anna] = rest.call("user.get", {"ID": 503})
    assert (anna["ID"], anna["NAME"], anna["LAST_NAME"], anna["EMAIL"]) == (
        "503", "Anna", "Smith", "anna.smith@example.com")
    added = sim.control.add_user("Dmitry", "Orlov", "dmitry@example.com")
    [dmitry] = rest.call("user.get", {"FILTER": {"ID": [added["id"]]}})
    assert dmitry["EMAIL"] == "dmitry@example.com"


def test_chat_messages_and_notifications_are_recorded(rest: Rest, sim: RunningSimulator) -> None:
    message_id = rest.call("im.message.add", {"DIALOG_ID": "chat7001", "MESSAGE": "[b]New result[/b]",
                                              "URL_PREVIEW": "N", "ATTACH": [{"MESSAGE": "x"}]})
    notify_id = rest.call("im.notify.system.add", {"USER_ID": 503, "MESSAGE": "Result closed", "TAG": "t1",
                                                   "CLIENT_ID": "b24notify"})
    [message] = sim.control.messages()
    assert (message["id"], message["dialog_id"], message["message"], message["url_preview"]) == (
        message_id, "chat7001", "[b]New result[/b]", False)
    assert message["attach"] == [{"MESSAGE": "x"}]
    [notification] = sim.control.shown_notifications(503)
    assert (notification["id"], notification["user_id"], notification["tag"]) == (notify_id, 503, "t1")


def test_unknown_dialog_id_is_a_chat_id_error(rest: Rest, sim: RunningSimulator) -> None:
    answer = rest.post("im.message.add", {"DIALOG_ID": "team-chat", "MESSAGE": "hi"})
    assert (answer.status_code, answer.json()["error"]) == (400, "CHAT_ID")
    assert sim.control.messages() == []


def test_unknown_method_and_wrong_webhook(rest: Rest, sim: RunningSimulator) -> None:
    unknown = rest.post("tasks.task.frobnicate")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "ERROR_METHOD_NOT_FOUND")
    wrong = httpx.post(f"{sim.base_url}/rest/1/wrong-code/user.get")
    assert (wrong.status_code, wrong.json()) == (401, {"error": "NO_AUTH_FOUND",
                                                       "error_description": "Wrong authorization data"})
    other_user = httpx.post(f"{sim.base_url}/rest/2/{sim.config.webhook_code}/user.get")
    assert other_user.status_code == 401


def test_form_bodies_get_queries_and_json_suffix(rest: Rest) -> None:
    created = rest.http.post("tasks.task.add.json", data={"fields[TITLE]": "From a form", "fields[GROUP_ID]": "7"})
    task_id = int(created.json()["result"]["task"]["id"])
    task = rest.http.get("tasks.task.get", params={"taskId": task_id, "select[]": "GROUP_ID"}).json()["result"]
    assert task["task"] == {"id": str(task_id), "groupId": "7"}


def test_old_comment_methods_take_positional_params(rest: Rest) -> None:
    task_id = rest.add_task()
    comment_id = rest.call("task.commentitem.add", [task_id, {"POST_MESSAGE": "Positional", "AS_RESULT": "Y"}])
    assert rest.results(task_id)[0]["commentId"] == comment_id
    rest.call("task.commentitem.update", {"TASKID": task_id, "ITEMID": comment_id,
                                          "FIELDS": {"POST_MESSAGE": "Edited"}})
    assert rest.results(task_id)[0]["text"] == "Edited"
    rest.call("task.commentitem.delete", {"TASKID": task_id, "ITEMID": comment_id})
    assert rest.results(task_id) == []


def test_deleting_a_task_removes_it_and_its_results(rest: Rest) -> None:
    task_id = rest.add_task()
    rest.add_comment(task_id, as_result=True)
    assert rest.call("tasks.task.delete", {"taskId": task_id}) == {"task": True}
    assert rest.call("tasks.task.get", {"taskId": task_id}) == []
    assert rest.post("tasks.task.result.list", {"taskId": task_id}).json()["error"] == "0"
