"""The fleet-wide REST budget and the per-method time budget, against a real Redis and the
simulator's own leaky bucket."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from b24notify.devtools.simulator import RunningSimulator, SimulatorConfig
from b24notify.rest.budget import RateBudget
from b24notify.rest.errors import BudgetSpent, OperationTimeLimit
from b24notify.rest.operating import OperatingBudget
from b24notify.settings.rates import RateLimit


def test_rate_limit_spec_parses_and_rejects_nonsense():
    assert RateLimit.parse("2/50") == RateLimit(2.0, 50)
    assert RateLimit.parse("5/250").share(0.8) == RateLimit(4.0, 200)
    for bad in ("fast", "0/50", "2/0", "2"):
        with pytest.raises(ValueError):
            RateLimit.parse(bad)


def test_burst_up_to_capacity_then_the_drain_rate(redis, keys):
    budget = RateBudget(redis, keys.budget("p"), RateLimit(20.0, 7), max_wait=0)
    assert [budget.try_take() for _ in range(5)] == [0.0] * 5  # 7 less the jitter margin of 2
    wait = budget.try_take()
    assert 0 < wait <= 0.05 + 0.01
    with pytest.raises(BudgetSpent):
        budget.take()


def test_penalty_makes_every_holder_wait(redis, keys):
    first = RateBudget(redis, keys.budget("p"), RateLimit(2.0, 50))
    second = RateBudget(redis, keys.budget("p"), RateLimit(2.0, 50))
    first.penalize(3.0)
    assert second.try_take() > 2.5  # the other process sees the 503's back-off too


def test_two_processes_share_one_budget_and_never_hit_the_portal_limit(redis_url, key_prefix, redis):
    # Portal bucket 20 deep draining 10/s; our fleet budget is the same size. 2 x 40 calls would
    # trip the portal's bucket twice over if each process kept its own count.
    with RunningSimulator(SimulatorConfig(bucket_capacity=20, bucket_drain_per_second=10.0)) as sim:
        started = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "tests.support.limited_caller", sim.webhook_url, redis_url,
                                   key_prefix, "10/20", "40"]) for _ in range(2)]
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
        elapsed = time.monotonic() - started
        counts = sim.control.calls()["counts"]
    assert counts["by_method"].get("user.get") == 80
    assert "503" not in counts["by_status"]
    assert elapsed >= (80 - 20) / 10  # paced at the drain rate, not faster


def test_method_near_its_time_budget_pauses_until_reset(redis, keys):
    now = [1000.0]
    budget = OperatingBudget(redis, keys.operating("p"), limit_seconds=100, clock=lambda: now[0])
    budget.observe("tasks.task.result.list", {"operating": 50, "operating_reset_at": 1600})
    budget.check("tasks.task.result.list")  # well under: no pause
    budget.observe("tasks.task.result.list", {"operating": 85, "operating_reset_at": 1600})
    with pytest.raises(OperationTimeLimit) as info:
        budget.check("tasks.task.result.list")
    assert info.value.reset_at == 1600
    budget.check("user.get")  # other methods keep working
    now[0] = 1601
    budget.check("tasks.task.result.list")


def test_a_429_pauses_the_method_until_the_last_known_reset(redis, keys):
    now = [1000.0]
    budget = OperatingBudget(redis, keys.operating("p"), clock=lambda: now[0])
    budget.observe("tasks.task.get", {"operating": 1, "operating_reset_at": 1300})
    assert budget.pause("tasks.task.get") == 1300
    with pytest.raises(OperationTimeLimit):
        budget.check("tasks.task.get")
