"""A sent delivery's record is kept 30 days so that it is never sent again; it keeps only what
that needs (README "Capacity": the notice made it 1.5 kB, the first limit of Redis memory)."""

from __future__ import annotations

import logging

import pytest

from b24notify.notices import Notice
from b24notify.workers.context import WorkerContexts, bind_contexts, unbind_contexts
from b24notify.workers.deliver import KEEP_FINISHED_SECONDS
from b24notify.workers.jobs import run_deliveries
from tests.support.pipeline import sync
from tests.test_delivery_retry import attempt, new_result


def test_a_sent_record_keeps_its_status_and_portal_not_its_notice(ctx, user, redis, keys):
    deliveries = new_result(ctx, user)
    for did in deliveries:
        assert attempt(ctx, did) == "sent"
        record = {k.decode(): v.decode() for k, v in redis.hgetall(keys.delivery(did)).items()}
        assert record["status"] == "sent" and record["portal"] == ctx.portal
        assert "notice" not in record and "in_flight" not in record
        assert KEEP_FINISHED_SECONDS - 60 < redis.ttl(keys.delivery(did)) <= KEEP_FINISHED_SECONDS
        assert redis.memory_usage(keys.delivery(did)) < 300  # ~270 B; 1.5 kB with the notice


def test_a_slim_sent_record_still_stops_the_same_alert_from_going_again(ctx, user, simulator, sink, redis, keys):
    """The task's known results lost (a failover that lost a commit): the next sync finds the same
    changes again, and the sent records keep them from being queued a second time."""
    chat, mail = new_result(ctx, user)
    task = Notice.from_json(redis.hget(keys.delivery(chat), "notice").decode()).task_id
    assert attempt(ctx, chat) == "sent" and attempt(ctx, mail) == "sent"
    redis.delete(keys.results(ctx.portal, task))
    outcome = sync(ctx, task)
    assert {n.key for n in outcome.notices} == {chat, mail}  # the same changes, found again
    assert ctx.deliveries.claim(10, 60) == []  # none queued: the records say sent
    assert len(simulator.control.messages()) == 1
    assert len(sink.messages) == 1


def test_a_late_claim_of_a_sent_delivery_finds_its_portal_and_sends_nothing(ctx, user, simulator, redis, keys,
                                                                            caplog: pytest.LogCaptureFixture):
    (chat, _) = new_result(ctx, user)
    assert attempt(ctx, chat) == "sent"
    ctx.deliveries.schedule(chat, at=0)  # a duplicate claim, as a reaped lease of a late worker gives
    (claim,) = ctx.deliveries.claim(1, 60, only=chat)
    contexts = WorkerContexts(ctx.settings, redis)
    token = bind_contexts(contexts)
    try:
        with caplog.at_level(logging.WARNING):
            assert run_deliveries([[claim.member, claim.token]]) == ["skipped"]
    finally:
        unbind_contexts(token)
        contexts.close()
    assert "unknown_portal" not in caplog.text
    assert len(simulator.control.messages()) == 1
    assert redis.zscore(ctx.deliveries.k.due, chat) is None
