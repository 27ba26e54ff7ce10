"""The demo of `b24notify up` (no portal configured), run once for this module as a real process:
nothing lost at start, next steps said, each alert's chat message before its e-mail, and its Redis
keys expiring while it runs and gone once it stops."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from redis import Redis

from tests.support.processes import CliProcess
from tests.support.servers import free_port, wait_for
from tests.support.up import delete_keys, demo_keys, kill_everything, start_up, wait_for_output

pytestmark = pytest.mark.e2e

FIRST_ALERT_SECONDS = 40.0
EMAIL_HEADER = re.compile(r"^--- \d\d:\d\d:\d\d e-mail to team@example\.com ---$", re.MULTILINE)
CHAT_HEADER = re.compile(r"^--- \d\d:\d\d:\d\d chat message to chat1 ---$", re.MULTILINE)


@dataclass
class RunningDemo:
    process: CliProcess
    key_prefix: str
    redis: Redis
    output_at_first_alert: str


@pytest.fixture(scope="module")
def demo(redis_url) -> Iterator[RunningDemo]:
    """`b24notify up` with nothing configured, once its first alert's chat message and e-mail printed."""
    key_prefix = f"t{uuid.uuid4().hex[:10]}"
    redis = Redis.from_url(redis_url)
    process = start_up(redis_url, key_prefix, "--port", str(free_port()))
    try:
        wait_for_output(process, "b24notify: up —", 40)
        # "Subject:" is printed for every mail (the e-mail of the first alert).
        output = wait_for_output(process, "Subject:", FIRST_ALERT_SECONDS)
        yield RunningDemo(process, key_prefix, redis, output)
    finally:
        kill_everything(process, key_prefix)
        process.stop()
        delete_keys(redis, key_prefix)
        redis.close()


def test_demo_activity_starts_only_once_the_web_answers(demo):
    output = demo.output_at_first_alert
    assert "event=sim.event.failed" not in output, output  # an event fired at a web not up yet
    assert "event=sim.activity.failed" not in output, output
    assert output.index("b24notify: up —") < output.index("event=sim.activity "), output


def test_demo_says_what_to_do_next(demo):
    output = demo.output_at_first_alert
    next_steps = output[output.index("b24notify: up —"):]
    assert re.search(r"curl http://127\.0\.0\.1:\d+/_sim/messages", next_steps), next_steps
    assert "B24_WEBHOOK_URL" in next_steps and "README" in next_steps, next_steps
    assert "Ctrl-C stops" in next_steps, next_steps


def test_demo_prints_an_alerts_chat_message_before_its_email(demo):
    output = demo.output_at_first_alert
    assert CHAT_HEADER.search(output), output  # each carries the time it arrived
    email = EMAIL_HEADER.search(output)
    assert email, output
    assert output.index("chat message to chat1") < email.start() < output.index("Subject:"), output


def test_demo_keys_carry_a_ttl_while_it_runs(demo):
    def all_expiring() -> bool:
        keys = demo_keys(demo.redis, demo.key_prefix)
        return bool(keys) and all(demo.redis.ttl(key) != -1 for key in keys)

    wait_for(all_expiring, 15, f"demo keys without a TTL, or none under {demo.key_prefix}-demo-*")


def test_demo_keys_are_deleted_when_it_stops(demo):
    assert demo_keys(demo.redis, demo.key_prefix), "the demo wrote no keys under its own prefix"
    assert demo.process.stop(timeout=30) in (0, -15)
    assert "event=demo.keys_deleted" in demo.process.output()
    assert demo_keys(demo.redis, demo.key_prefix) == []
    assert not [q for q in demo.redis.smembers("rq:queues") if demo.key_prefix.encode() in q]
