"""The demo activity drives the portal through REST until stopped."""

from __future__ import annotations

import threading

from b24notify.devtools.simulator import run_activity

from .conftest import SimulatorFactory, wait_until


def test_activity_creates_results_pins_comments_and_closes_results(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(bucket_capacity=0)
    stop = threading.Event()
    actor = threading.Thread(target=run_activity, args=(sim.webhook_url, stop, 0.001), kwargs={"rng_seed": 1})
    actor.start()
    try:
        def lively() -> bool:
            results = sim.control.state()["results"]
            pinned = any(r["created_by"] == 1 for r in results)  # addFromComment makes the caller the author
            closed = any(r["status"] == 1 for r in results)
            return pinned and closed

        wait_until(lively, timeout=10.0, what="a pinned result and a closed result")
    finally:
        stop.set()
        actor.join(timeout=5)
    assert not actor.is_alive()
    methods = sim.control.calls()["counts"]["by_method"]
    assert {"tasks.task.add", "task.commentitem.add", "tasks.task.result.addFromComment",
            "tasks.task.complete"} <= set(methods)
