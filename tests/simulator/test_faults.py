"""Fault rules: error codes with their statuses, counts, probabilities, tasks, and the network."""

from __future__ import annotations

import httpx
import pytest

from b24notify.devtools.simulator import RunningSimulator
from b24notify.devtools.simulator.faults import FaultPlan, FaultRule, InvalidFaultRule

from .conftest import Rest, SimulatorFactory


def test_a_counted_fault_fails_that_many_calls_then_stops(rest: Rest, sim: RunningSimulator) -> None:
    sim.control.add_faults({"method": "tasks.task.result.list", "error": "INTERNAL_SERVER_ERROR", "count": 2})
    task_id = rest.add_task()
    answers = [rest.post("tasks.task.result.list", {"taskId": task_id}) for _ in range(3)]
    assert [a.status_code for a in answers] == [500, 500, 200]
    assert answers[0].json() == {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}


@pytest.mark.parametrize(("code", "status"), [
    ("expired_token", 401), ("QUERY_LIMIT_EXCEEDED", 503), ("OPERATION_TIME_LIMIT", 429),
    ("PORTAL_DELETED", 403), ("insufficient_scope", 403), ("0", 400), ("SOMETHING_NEW", 400),
])
def test_fault_status_defaults_to_the_error_table(code: str, status: int) -> None:
    plan = FaultPlan()
    plan.add(FaultRule(error=code))
    fault = plan.pick("user.get")
    assert fault is not None and fault.error is not None
    assert (fault.error.code, fault.error.status) == (code, status)


def test_a_given_status_wins_over_the_table(rest: Rest, sim: RunningSimulator) -> None:
    sim.control.add_faults({"error": "QUERY_LIMIT_EXCEEDED", "status": 429, "count": 1})
    assert rest.post("user.get").status_code == 429


def test_a_task_fault_hits_only_that_task(rest: Rest, sim: RunningSimulator) -> None:
    sick, healthy = rest.add_task(), rest.add_task()
    sim.control.add_faults({"method": "tasks.task.result.list", "task_id": sick, "error": "0"})
    assert rest.post("tasks.task.result.list", {"taskId": sick}).status_code == 400
    assert rest.post("tasks.task.result.list", {"taskId": healthy}).status_code == 200


def test_method_faults_hit_batch_sub_calls_and_star_faults_the_whole_batch(rest: Rest, sim: RunningSimulator) -> None:
    sim.control.add_faults({"method": "user.get", "error": "ACCESS_DENIED", "count": 1})
    result = rest.call("batch", {"cmd": {"a": "user.get", "b": "user.get"}})
    assert result["result_error"]["a"]["error"] == "ACCESS_DENIED"
    assert list(result["result"]) == ["b"]

    sim.control.add_faults({"method": "*", "error": "OVERLOAD_LIMIT", "count": 1})
    whole = rest.post("batch", {"cmd": {"a": "user.get"}})
    assert (whole.status_code, whole.json()["error"]) == (503, "OVERLOAD_LIMIT")


def test_probability_faults_replay_for_the_same_seed(start_simulator: SimulatorFactory) -> None:
    def pattern() -> list[int]:
        sim = start_simulator(seed=5, bucket_capacity=0)
        sim.control.add_faults({"method": "user.get", "error": "INTERNAL_SERVER_ERROR", "probability": 0.5})
        with Rest(sim.webhook_url) as rest:
            return [rest.post("user.get").status_code for _ in range(20)]

    first = pattern()
    assert first == pattern()
    assert set(first) == {200, 500}


def test_a_drop_fault_cuts_the_connection(rest: Rest, sim: RunningSimulator) -> None:
    sim.control.add_faults({"method": "user.get", "network": "drop", "count": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        rest.post("user.get")
    assert rest.post("user.get").status_code == 200
    assert sim.control.calls()["calls"][0]["dropped"] is True


def test_a_drop_after_fault_does_the_call_then_cuts_the_connection(rest: Rest, sim: RunningSimulator) -> None:
    sim.control.add_faults({"method": "im.message.add", "network": "drop_after", "count": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        rest.post("im.message.add", {"DIALOG_ID": "chat1", "MESSAGE": "hello"})
    assert [m["message"] for m in sim.control.messages()] == ["hello"]  # it happened; nobody was told
    recent = rest.post("im.dialog.messages.get", {"DIALOG_ID": "chat1", "LIMIT": 5}).json()["result"]
    assert [m["text"] for m in recent["messages"]] == ["hello"]


def test_a_delay_fault_makes_the_client_time_out(rest: Rest, sim: RunningSimulator) -> None:
    sim.control.add_faults({"method": "user.get", "network": "delay", "delay_seconds": 0.5, "count": 1})
    with httpx.Client(base_url=sim.webhook_url, timeout=0.1) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("user.get")
    assert rest.post("user.get").status_code == 200


def test_faults_never_touch_the_control_api(rest: Rest, sim: RunningSimulator) -> None:
    sim.control.add_faults({"method": "*", "error": "INTERNAL_SERVER_ERROR"})
    assert rest.post("user.get").status_code == 500
    assert sim.control.state()["tasks"] == []
    sim.control.clear_faults()
    assert rest.post("user.get").status_code == 200


@pytest.mark.parametrize("raw", [
    {"method": "user.get"},
    {"error": "0", "probability": 2},
    {"network": "delay"},
    {"error": "0", "count": 0},
    {"error": "0", "colour": "red"},
])
def test_invalid_fault_rules_are_refused(raw: dict[str, object], sim: RunningSimulator) -> None:
    with pytest.raises(InvalidFaultRule):
        FaultRule.from_json(raw)
    answer = httpx.post(f"{sim.base_url}/_sim/faults", json=raw)
    assert answer.status_code == 400
