"""A job's time limit never cuts a send between "the server accepted it" and "recorded as sent".

The sync job sends the alerts of its sync itself, and RQ ends a job that outlives its timeout
(0.8 × lease) with an exception raised wherever it happens to be. Cut inside SMTP DATA, the
mail is accepted but not recorded, and goes out again. The job keeps its own deadline instead:
a send starts only when it can finish before it, and what does not fit is left due for the next
job (not a failed attempt).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from rq.registry import FailedJobRegistry
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty

from b24notify.devtools.simulator import RunningSimulator, SimulatorConfig
from b24notify.devtools.smtp_sink import SmtpSink
from b24notify.keys import task_member
from b24notify.workers.context import WorkerContext
from b24notify.workers.deadline import JobDeadline
from b24notify.workers.deliver import deliver, deliver_many
from b24notify.workers.sync import TaskSync
from tests.support.pipeline import delivery_ids
from tests.support.portal_user import PortalUser
from tests.support.processes import CliProcess, fleet_idle
from tests.support.servers import answers, free_port, wait_for

RESULTS = 12  # the repro: 12 results in one sync, 1.5 s a mail, a 10 s lease (8 s job timeout)


def mails_due(ctx: WorkerContext, user, count: int) -> list[str]:
    """``count`` tasks with a new result each, synced: their e-mail deliveries wait in the outbox."""
    tasks = [user.add_task(f"Task {i}") for i in range(count)]
    for task in tasks:
        user.comment(task, "Done", as_result=True)
    found = []
    for task in tasks:
        member = task_member(ctx.portal, task)
        ctx.tasks.schedule(member, at=0)
        (claim,) = ctx.tasks.claim(1, 60, only=member)
        found += delivery_ids(TaskSync(ctx).run(claim), "email")
    return found


def test_the_job_timeout_waits_until_an_accepted_mail_is_recorded(ctx, user, sink, redis, keys):
    (mail,) = mails_due(ctx, user, 1)
    sink.answer_data_after(1.5)
    (claim,) = ctx.deliveries.claim(1, 60, only=mail)
    # RQ's own alarm, as a worker arms it around a job: it goes off while the server, which has
    # the mail already, takes its time to say so.
    with pytest.raises(JobTimeoutException), UnixSignalDeathPenalty(1, JobTimeoutException):
        deliver(ctx, claim)
    assert redis.hget(keys.delivery(mail), "status") == b"sent"
    assert len(sink.wait_for(1)) == 1


def test_a_send_that_does_not_fit_before_the_deadline_is_left_due_not_attempted(ctx, user, sink, redis, keys):
    mails = mails_due(ctx, user, 3)
    claims = [c for mail in mails for c in ctx.deliveries.claim(1, 60, only=mail)]
    # 3 s left: a mail may take 20 s (twice the SMTP timeout). The job's first send goes anyway,
    # bounded by the deadline; the others wait for the next job.
    outcomes = deliver_many(ctx, claims, deadline=JobDeadline.within(4.0))
    assert [o.status for o in outcomes] == ["sent", "deferred", "deferred"]
    assert len(sink.wait_for(1)) == 1
    for mail in mails[1:]:
        assert redis.zscore(ctx.deliveries.k.due, mail) <= time.time()  # due now, for the next job
        assert redis.hget(keys.delivery(mail), "attempts") in (None, b"0")
    assert deliver_many(ctx, ctx.deliveries.claim(10, 60)) and len(sink.wait_for(3)) == 3


@pytest.fixture
def slow_mail(redis_url, key_prefix, redis) -> Iterator[dict]:
    web_port = free_port()
    config = SimulatorConfig(handler_url=f"http://127.0.0.1:{web_port}/webhooks/bitrix24", bucket_capacity=0)
    with SmtpSink() as sink, RunningSimulator(config) as sim:
        sink.answer_data_after(1.5)
        env = {
            "REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": key_prefix, "B24NOTIFY_QUEUE": f"{key_prefix}-q",
            "B24_WEBHOOK_URL": sim.webhook_url, "B24_APPLICATION_TOKEN": sim.config.application_token,
            "NOTIFY_EMAIL": "team@example.com", "SMTP_URL": sink.url, "EMAIL_FROM": "b24notify@example.com",
            "B24NOTIFY_DEBOUNCE_SECONDS": "0.2", "B24NOTIFY_LEASE_SECONDS": "10", "B24_RECONCILE_SHARE": "0",
            "B24NOTIFY_LOG_LEVEL": "INFO",
        }
        web = CliProcess(["serve", "--port", str(web_port)], env)
        user = PortalUser(sim.webhook_url)
        processes = [web]
        try:
            wait_for(lambda: answers(f"http://127.0.0.1:{web_port}/readyz"), 20, "web did not start")
            connected = int(time.time())
            wait_for(lambda: int(time.time()) > connected, 2, "clock")  # results are stamped to the second
            yield {"sim": sim, "sink": sink, "user": user, "env": env, "processes": processes}
        finally:
            for process in processes:
                process.stop()
            user.close()


@pytest.mark.e2e
def test_mails_of_a_sync_that_outlasts_its_job_go_out_once_each(slow_mail, redis, key_prefix):
    sim, sink, user, env = slow_mail["sim"], slow_mail["sink"], slow_mail["user"], slow_mail["env"]
    # Every result is in before the worker starts, so one sync job finds all twelve and owes
    # twelve mails: 18 s of SMTP against an 8 s job timeout.
    for i in range(RESULTS):
        user.comment(user.add_task(f"Slow mail {i}"), f"Result {i}", as_result=True)
    sim.control.wait_events()
    wait_for(lambda: redis.zcard(f"{key_prefix}:due:tasks") == RESULTS, 20, "the events did not arrive")
    worker = CliProcess(["worker", "--name", f"{key_prefix}-w"], env)
    slow_mail["processes"].append(worker)

    wait_for(lambda: len(sink.messages) >= RESULTS, 90, f"not all {RESULTS} mails arrived")
    # A mail cut mid-send comes back only when its lease expires (10 s): wait until nothing is due
    # or leased any more, then count.
    wait_for(lambda: fleet_idle(env["REDIS_URL"], key_prefix), 60, "the worker did not go quiet")
    ids = Counter(str(m["Message-ID"]) for m in sink.messages)
    assert len(ids) == RESULTS
    assert [i for i, n in ids.items() if n > 1] == [], "mails sent twice"
    assert len(sink.messages) == RESULTS
    # The jobs ended by themselves before RQ's timeout: none failed.
    assert FailedJobRegistry(env["B24NOTIFY_QUEUE"], connection=redis).count == 0, worker.output()[-3000:]
