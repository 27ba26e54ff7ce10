"""The /_sim/ control API: config changes, reset, state and the call log."""

from __future__ import annotations

import httpx

from b24notify.devtools.simulator import RunningSimulator

from .conftest import Rest


def test_config_changes_apply_live_and_unknown_keys_are_refused(rest: Rest, sim: RunningSimulator) -> None:
    config = sim.control.configure(bucket_capacity=1, bucket_drain_per_second=0.0001)
    assert (config["bucket_capacity"], config["bucket_drain_per_second"]) == (1, 0.0001)
    assert [rest.post("user.get").status_code for _ in range(2)] == [200, 503]

    refused = httpx.post(f"{sim.base_url}/_sim/config", json={"port": 80})
    assert refused.status_code == 400 and "port" in refused.json()["error"]
    wrong_type = httpx.post(f"{sim.base_url}/_sim/config", json={"new_card": "yes"})
    assert wrong_type.status_code == 400


def test_reset_brings_back_the_startup_portal(rest: Rest, sim: RunningSimulator) -> None:
    task_id = rest.add_task()
    rest.add_comment(task_id, as_result=True)
    rest.call("im.message.add", {"DIALOG_ID": "503", "MESSAGE": "hi"})
    sim.control.add_faults({"method": "user.get", "error": "0"})
    sim.control.configure(new_card=True)
    assert sim.control.wait_events()

    sim.control.reset()

    state = sim.control.state()
    assert (state["tasks"], state["results"], state["comments"], state["new_card"]) == ([], [], [], False)
    assert [u["id"] for u in state["users"]] == [1, 503, 504, 505]
    assert sim.control.messages() == [] and sim.control.events() == []
    assert sim.control.calls()["calls"] == []
    assert rest.post("user.get").status_code == 200
    assert rest.add_task() == task_id  # ids start over as well


def test_state_shows_tasks_results_and_comments(rest: Rest, sim: RunningSimulator) -> None:
    task_id = rest.add_task()
    comment_id = rest.add_comment(task_id, "Signed", as_result=True)
    state = sim.control.state()
    [task] = state["tasks"]
    [result] = state["results"]
    assert (task["id"], task["status"]) == (task_id, 2)
    assert (result["task_id"], result["comment_id"], result["status"], result["text"]) == (
        task_id, comment_id, 0, "Signed")


def test_call_log_counts_by_method_status_and_error(rest: Rest, sim: RunningSimulator) -> None:
    rest.post("user.get")
    rest.post("tasks.task.result.list", {"taskId": 999999})
    httpx.post(f"{sim.base_url}/rest/1/wrong/user.get")
    calls = sim.control.calls()
    assert calls["counts"]["by_status"] == {"200": 1, "400": 1, "401": 1}
    assert calls["counts"]["by_error"] == {"0": 1, "NO_AUTH_FOUND": 1}
    [listed] = sim.control.calls(method="tasks.task.result.list")["calls"]
    assert (listed["params"], listed["http_status"], listed["error"]) == ({"taskId": 999999}, 400, "0")
