"""The demo of `b24notify up` (no portal configured), run once for this module as a real process:
nothing lost at start, next steps said, each alert's chat message before its e-mail, the task's
people told in their own language (one of them reads Russian, the command to change that works),
and its Redis keys expiring while it runs and gone once it stops."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis import Redis

from b24notify.devtools.simulator.activity import Cast, run_activity
from tests.support.processes import CliProcess
from tests.support.servers import free_port, wait_for
from tests.support.up import delete_keys, demo_keys, kill_everything, start_up, wait_for_output

pytestmark = pytest.mark.e2e

FIRST_ALERT_SECONDS = 40.0
EMAIL_HEADER = re.compile(r"^--- \d\d:\d\d:\d\d e-mail to team@example\.com ---$", re.MULTILINE)
CHAT_HEADER = re.compile(r"^--- \d\d:\d\d:\d\d chat message to chat1 ---$", re.MULTILINE)
RULE = "-" * 72


def notification(person: str) -> re.Pattern[str]:
    """A personal notification as the demo prints it: its header, then its text (group 1)."""
    return re.compile(rf"^--- \d\d:\d\d:\d\d personal notification to {re.escape(person)} ---\n(.*?)\n{RULE}$",
                      re.MULTILINE | re.DOTALL)


def email_to(address: str) -> re.Pattern[str]:
    """An e-mail as the demo prints it: its header, then From/To/Subject and the text (group 1)."""
    return re.compile(rf"^--- \d\d:\d\d:\d\d e-mail to {re.escape(address)} ---\n(.*?)\n{RULE}$",
                      re.MULTILINE | re.DOTALL)


# The demo's first scene: Anna Smith (503) creates a task for Chen Li (505), Boris Ivanov (504)
# audits it, Chen posts its result. Boris reads Russian, Anna English; Chen, its author, gets nothing.
FIRST_ALERT = (CHAT_HEADER, EMAIL_HEADER, notification("Anna Smith (503)"), notification("Boris Ivanov (504)"),
               email_to("anna.smith@example.com"), email_to("boris.ivanov@example.com"))


@dataclass
class RunningDemo:
    process: CliProcess
    key_prefix: str
    redis: Redis
    output_at_first_alert: str


@pytest.fixture(scope="module")
def demo(redis_url) -> Iterator[RunningDemo]:
    """`b24notify up` with nothing configured, once its first alert's chat message, personal
    notifications and e-mails printed."""
    key_prefix = f"t{uuid.uuid4().hex[:10]}"
    redis = Redis.from_url(redis_url)
    process = start_up(redis_url, key_prefix, "--port", str(free_port()))
    try:
        wait_for_output(process, "b24notify: up —", 40)
        output = wait_for(lambda: _printed_all(process, FIRST_ALERT), FIRST_ALERT_SECONDS,
                          "the first alert's chat message, personal notifications and e-mails not all printed")
        yield RunningDemo(process, key_prefix, redis, output)
    finally:
        kill_everything(process, key_prefix)
        process.stop()
        delete_keys(redis, key_prefix)
        redis.close()


def _printed_all(process: CliProcess, patterns: tuple[re.Pattern[str], ...]) -> str:
    output = process.output()
    if not process.alive():
        raise AssertionError(f"`b24notify up` exited {process.proc.returncode}:\n{output[-4000:]}")
    return output if all(pattern.search(output) for pattern in patterns) else ""


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


def test_demo_tells_the_tasks_people_in_their_own_language(demo):
    output = demo.output_at_first_alert
    boris, anna = notification("Boris Ivanov (504)").search(output), notification("Anna Smith (503)").search(output)
    assert boris and anna, output
    assert boris.group(1).startswith("[b]Новый результат[/b]") and "Автор: Chen Li" in boris.group(1), boris.group(1)
    assert anna.group(1).startswith("[b]New result[/b]") and "By: Chen Li" in anna.group(1), anna.group(1)
    # The result's author caused the change: he is told nothing of it (a later task may be his to hear of).
    task = re.search(r"\] #(\d+)$", boris.group(1), re.MULTILINE)
    assert task, boris.group(1)
    told_chen = [match.group(1) for pattern in (notification("Chen Li (505)"), email_to("chen.li@example.com"))
                 for match in pattern.finditer(output)]
    assert not [text for text in told_chen if f"#{task.group(1)}" in text], told_chen


def test_demo_emails_people_to_their_own_address_in_their_language(demo):
    output = demo.output_at_first_alert
    boris = email_to("boris.ivanov@example.com").search(output)
    anna = email_to("anna.smith@example.com").search(output)
    assert boris and anna, output
    assert "To:      boris.ivanov@example.com" in boris.group(1), boris.group(1)
    assert re.search(r"^Subject: Новый результат в задаче #\d+: ", boris.group(1), re.MULTILINE), boris.group(1)
    assert re.search(r"^Subject: New result in task #\d+: ", anna.group(1), re.MULTILINE), anna.group(1)


def test_demo_says_who_reads_russian_and_its_command_reaches_the_demos_preferences(demo, redis_url):
    output = demo.output_at_first_alert
    line = re.search(r"^b24notify: Boris Ivanov \(504\) reads alerts in Russian, the others in English; "
                     r"change one: (.+) b24notify prefs set --portal (\S+) --user ID --language ru", output,
                     re.MULTILINE)
    assert line, output
    env = dict(pair.split("=", 1) for pair in line.group(1).split())
    assert set(env) == {"REDIS_URL", "B24_WEBHOOK_URL", "B24NOTIFY_KEY_PREFIX"}, env
    assert env["REDIS_URL"] == redis_url and env["B24NOTIFY_KEY_PREFIX"].startswith(f"{demo.key_prefix}-demo-"), env
    # The printed environment and portal are the demo's own: `prefs list` there shows Boris in Russian.
    listing = CliProcess(["prefs", "list", "--portal", line.group(2)], env)
    try:
        assert listing.proc.wait(timeout=30) == 0, listing.output()
    finally:
        listing.stop()
    assert re.search(r"^504\s+no\s+all\s+all\s+ru$", listing.output(), re.MULTILINE), listing.output()


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


def test_demo_activity_gives_each_task_people_to_tell_besides_its_author(simulator):
    """Every task has a creator, a responsible person who writes its comments and results, and one or
    two auditors: routes to the creator and auditors always reach someone who did not write the result.
    The opening scene comes first: its task, then a result by its responsible person."""
    stop = threading.Event()
    activity = threading.Thread(target=run_activity, args=(simulator.webhook_url, stop, 0.01),
                                kwargs={"rng_seed": 7, "opening": Cast(503, 505, (504,))})
    activity.start()
    try:
        wait_for(lambda: _made(simulator.control.state(), tasks=5, comments=8), 20,
                 "the activity made too few tasks and comments")
    finally:
        stop.set()
        activity.join(timeout=15)
    state = simulator.control.state()
    tasks = {task["id"]: task for task in state["tasks"]}
    first = tasks[min(tasks)]
    assert (first["created_by"], first["responsible_id"], first["auditors"]) == (503, 505, [504]), first
    assert state["comments"][0]["task_id"] == first["id"] and state["comments"][0]["author_id"] == 505, state
    assert state["results"][0]["source_comment_id"] == state["comments"][0]["id"], state
    users = {user["id"] for user in state["users"]}
    for task in tasks.values():
        creator, responsible, auditors = task["created_by"], task["responsible_id"], task["auditors"]
        assert creator != responsible and 1 <= len(auditors) <= 2, task
        assert not {creator, responsible} & set(auditors) and {creator, responsible, *auditors} <= users, task
    assert all(comment["author_id"] == tasks[comment["task_id"]]["responsible_id"] for comment in state["comments"])


def _made(state: dict[str, Any], *, tasks: int, comments: int) -> bool:
    return len(state["tasks"]) >= tasks and len(state["comments"]) >= comments
