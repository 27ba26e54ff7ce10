"""``batch`` (docs/protocol.md §5): sections, per-command errors, empty sections as [], limits."""

from __future__ import annotations

from typing import Any

from b24notify.devtools.simulator import RunningSimulator

from .conftest import Rest


def _batch(rest: Rest, cmd: Any, **extra: Any) -> dict[str, Any]:
    response = rest.post("batch", {"cmd": cmd, **extra})
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    assert set(payload) == {"result", "time"}
    return dict(payload["result"])


def test_batch_answers_in_five_sections(rest: Rest) -> None:
    task_id = rest.add_task()
    result = _batch(rest, {
        "task": f"tasks.task.get?taskId={task_id}&select[]=TITLE",
        "results": f"tasks.task.result.list?taskId={task_id}",
        "missing": "tasks.task.result.list?taskId=999999",
        "tasks": "tasks.task.list?filter[STATUS]=2",
    })
    assert set(result) == {"result", "result_error", "result_total", "result_next", "result_time"}
    assert result["result"]["task"] == {"task": {"id": str(task_id), "title": "Sign the contract"}}
    assert result["result"]["results"] == []
    assert result["result_error"] == {"missing": {"error": "0", "error_description": "Access denied."}}
    assert result["result_total"] == {"tasks": 1}
    assert result["result_next"] == []  # an empty section is [], not {}
    assert set(result["result_time"]) == {"task", "results", "tasks"}  # a failed command has no time


def test_batch_without_errors_has_an_empty_error_section(rest: Rest) -> None:
    result = _batch(rest, {"me": "user.get?ID=1"})
    assert result["result_error"] == []
    assert result["result"]["me"][0]["NAME"] == "Admin"


def test_batch_of_a_list_answers_lists(rest: Rest) -> None:
    result = _batch(rest, ["user.get?ID=1", "user.get?ID=503"])
    assert [users[0]["ID"] for users in result["result"]] == ["1", "503"]
    assert result["result_total"] == [1, 1]


def test_commands_past_the_50th_fail_inside_a_200(rest: Rest) -> None:
    result = _batch(rest, {f"c{i}": "user.get?ID=1" for i in range(52)})
    assert len(result["result"]) == 50
    assert result["result_error"] == {
        key: {"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"}
        for key in ("c50", "c51")
    }


def test_nested_batch_is_not_allowed(rest: Rest) -> None:
    result = _batch(rest, {"inner": "batch?cmd[x]=user.get"})
    assert result["result_error"]["inner"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"


def test_halt_stops_at_the_first_error(rest: Rest) -> None:
    cmd = {"a": "user.get?ID=1", "b": "no.such.method", "c": "user.get?ID=503"}
    halted = _batch(rest, cmd, halt=1)
    assert list(halted["result"]) == ["a"] and list(halted["result_error"]) == ["b"]
    assert halted["result_error"]["b"]["error"] == "ERROR_METHOD_NOT_FOUND"
    carried_on = _batch(rest, cmd, halt=0)
    assert list(carried_on["result"]) == ["a", "c"]


def test_batch_as_a_form_body_runs_sub_calls_that_change_things(rest: Rest) -> None:
    task_id = rest.add_task()
    comment_id = rest.add_comment(task_id)
    response = rest.http.post("batch", data={
        "halt": "0",
        "cmd[pin]": f"tasks.task.result.addFromComment?commentId={comment_id}",
        "cmd[list]": f"tasks.task.result.list?taskId={task_id}",
    })
    result = response.json()["result"]
    assert result["result"]["pin"]["commentId"] == comment_id
    assert [r["commentId"] for r in result["result"]["list"]] == [comment_id]


def test_batch_sub_calls_are_in_the_call_log(rest: Rest, sim: RunningSimulator) -> None:
    _batch(rest, {"a": "user.get", "b": "tasks.task.result.list?taskId=x"})
    calls = sim.control.calls()
    [batch] = [c for c in calls["calls"] if c["method"] == "batch"]
    assert batch["sub_calls"] == [{"key": "a", "method": "user.get", "error": None},
                                  {"key": "b", "method": "tasks.task.result.list", "error": "100"}]
    assert calls["counts"]["by_method"]["tasks.task.result.list"] == 1
    assert calls["counts"]["by_error"] == {"100": 1}
