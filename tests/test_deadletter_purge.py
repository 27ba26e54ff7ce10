"""The dead-letter list and the delivery records it names expire together, and an operator can
purge it (``b24notify deadletter purge [--older-than 7d]``): ``doctor`` does not fail for good
on deliveries nobody can replay any more."""

from __future__ import annotations

import pytest

from b24notify.cli import main
from b24notify.deadletter import DEAD_RECORD_SECONDS, DeadLetters, parse_age
from b24notify.doctor import run_doctor
from b24notify.keys import task_member
from b24notify.workers.context import WorkerContext
from b24notify.workers.deliver import KEEP_FINISHED_SECONDS, deliver
from b24notify.workers.sync import TaskSync
from b24notify.workers.upkeep import Upkeep


def make_dead_delivery(ctx: WorkerContext, user, sink) -> str:
    """A new result whose mail the server refuses for good (550): one dead delivery."""
    task = user.add_task()
    for pin in (False, True):
        if pin:
            user.comment(task, "Done", as_result=True)
        member = task_member(ctx.portal, task)
        ctx.tasks.schedule(member, at=0)
        (claim,) = ctx.tasks.claim(1, 60, only=member)
        TaskSync(ctx).run(claim)
    sink.refuse_next(1, code=550)
    statuses = {}
    while claims := ctx.deliveries.claim(50, 60):
        statuses.update({c.member: deliver(ctx, c).status for c in claims})
    (dead,) = [d for d, status in statuses.items() if status == "dead"]
    return dead


def doctor_line(settings, name: str) -> str:
    lines: list[str] = []
    run_doctor(settings, lines.append)
    (line,) = [line for line in lines if line[6:].startswith(name)]
    return line


def test_replaying_a_delivery_whose_record_expired_takes_it_off_the_list(ctx, settings, simulator, sink, user,
                                                                         redis, keys):
    dead = make_dead_delivery(ctx, user, sink)
    assert doctor_line(settings, "deadletter").startswith("FAIL")
    redis.delete(keys.delivery(dead))  # its 30 days are over
    assert DeadLetters(redis, keys).replay() == []
    assert redis.zcard(keys.deadletter()) == 0
    assert doctor_line(settings, "deadletter").startswith("ok")


def test_dead_letters_leave_the_list_when_their_records_expire(ctx, simulator, sink, user, redis, keys):
    dead = make_dead_delivery(ctx, user, sink)
    ttl = redis.ttl(keys.delivery(dead))
    assert 0 < ttl <= DEAD_RECORD_SECONDS
    dead_at = redis.zscore(keys.deadletter(), dead)
    assert dead_at is not None
    upkeep = Upkeep(redis, keys, wall=lambda: dead_at + DEAD_RECORD_SECONDS - 60)
    upkeep.run()
    assert redis.zscore(keys.deadletter(), dead) is not None  # a minute before its record goes: kept
    upkeep.wall = lambda: dead_at + DEAD_RECORD_SECONDS + 1
    upkeep.run()
    assert redis.zcard(keys.deadletter()) == 0


def test_deadletter_purge_older_than_takes_only_the_old_ones(ctx, settings, simulator, sink, user, redis, keys,
                                                             monkeypatch, capsys):
    real = ctx.clock
    ctx.clock = lambda: real() - 10 * 86400  # this one died ten days ago
    old = make_dead_delivery(ctx, user, sink)
    ctx.clock = real
    fresh = make_dead_delivery(ctx, user, sink)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("B24NOTIFY_KEY_PREFIX", settings.b24notify_key_prefix)

    assert main(["deadletter", "purge", "--older-than", "7d"]) == 0
    assert "1 purged" in capsys.readouterr().out
    assert [e.id for e in DeadLetters(redis, keys).entries()] == [fresh]
    assert redis.exists(keys.delivery(old))  # its record stays to its end: the alert is never queued again

    assert main(["deadletter", "purge", "--older-than", "a week"]) == 2
    assert main(["deadletter", "purge"]) == 0
    assert DeadLetters(redis, keys).entries() == []


def test_a_dead_record_and_its_entry_share_one_lifetime():
    assert DEAD_RECORD_SECONDS == KEEP_FINISHED_SECONDS


@pytest.mark.parametrize(("text", "seconds"), [("7d", 7 * 86400), ("12h", 43200), ("30m", 1800), ("90s", 90),
                                               ("2w", 14 * 86400), ("1.5d", 1.5 * 86400)])
def test_ages_are_read_with_their_unit(text, seconds):
    assert parse_age(text) == seconds


def test_an_age_without_a_unit_is_refused():
    with pytest.raises(ValueError):
        parse_age("7")
