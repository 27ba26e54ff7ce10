"""The request-rate bucket and operating time (docs/protocol.md §6)."""

from __future__ import annotations

import httpx

from b24notify.devtools.simulator.bucket import LeakyBucket, OperatingLedger

from .conftest import SimulatorFactory


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_bucket_refuses_the_51st_request_of_a_burst() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(50, 2.0, clock)
    assert all(bucket.admit() for _ in range(50))
    assert not bucket.admit()
    assert bucket.level == 50  # a refused request adds nothing


def test_bucket_drains_two_per_second() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(50, 2.0, clock)
    for _ in range(50):
        bucket.admit()
    clock.now += 0.5
    assert bucket.admit()
    assert not bucket.admit()
    clock.now += 10
    assert bucket.level == 30


def test_bucket_capacity_zero_means_no_limit() -> None:
    bucket = LeakyBucket(0, 0.0, FakeClock())
    assert all(bucket.admit() for _ in range(1000))


def test_operating_time_slides_out_after_ten_minutes() -> None:
    clock = FakeClock()
    ledger = OperatingLedger(limit=250.0, cost=100.0, clock=clock)
    for _ in range(3):
        ledger.charge("tasks.task.list", 0.001)
        clock.now += 1
    assert ledger.operating("tasks.task.list") == 300.0
    assert ledger.is_blocked("tasks.task.list")
    assert not ledger.is_blocked("user.get")
    assert ledger.reset_at("tasks.task.list") == 1600
    clock.now = 1600.5
    assert ledger.operating("tasks.task.list") == 200.0
    assert not ledger.is_blocked("tasks.task.list")


def test_rapid_requests_get_503_after_50(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(bucket_drain_per_second=0.0001)
    with httpx.Client(base_url=sim.webhook_url) as http:
        statuses = [http.post("user.get").status_code for _ in range(50)]
        refused = http.post("user.get")
    assert statuses == [200] * 50
    assert refused.status_code == 503
    assert refused.json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    assert sim.control.calls()["counts"]["by_status"] == {"200": 50, "503": 1}


def test_a_batch_counts_once_in_the_bucket(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(bucket_capacity=2, bucket_drain_per_second=0.0001)
    with httpx.Client(base_url=sim.webhook_url) as http:
        batch = http.post("batch", json={"cmd": {f"u{i}": "user.get" for i in range(10)}})
        single = http.post("user.get")
        refused = http.post("user.get")
    assert (batch.status_code, single.status_code, refused.status_code) == (200, 200, 503)


def test_operating_limit_blocks_only_that_method(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(operating_limit_seconds=250, operating_cost_seconds=100)
    with httpx.Client(base_url=sim.webhook_url) as http:
        answers = [http.post("tasks.task.list") for _ in range(4)]
        other = http.post("user.get")
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].json()["error"] == "OPERATION_TIME_LIMIT"
    assert answers[2].json()["time"]["operating"] == 300
    assert other.status_code == 200


def test_every_answer_carries_the_time_object(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator()
    with httpx.Client(base_url=sim.webhook_url) as http:
        time_info = http.post("user.get").json()["time"]
    assert set(time_info) == {"start", "finish", "duration", "processing", "date_start", "date_finish",
                              "operating_reset_at", "operating"}
    assert time_info["date_start"].endswith("+00:00")
    assert time_info["operating_reset_at"] > time_info["start"]
