"""Every error code in the policy table, injected by the simulator into a real sync over HTTP:
the policy the table names is what actually happens."""

from __future__ import annotations

import pytest

from b24notify.keys import task_member
from b24notify.rest.errors import ERROR_TABLE, Policy
from b24notify.workers.sync import TaskSync

# What a sync does under each policy (webhook mode: no OAuth token to refresh, so REAUTH retries).
EXPECTED_STATUS = {
    Policy.RETRY_SOON: "retry",
    Policy.RETRY_LATER: "retry",
    Policy.REAUTH: "retry",
    Policy.DROP_TASK: "dropped",
    Policy.HALT_PORTAL: "halted",
    Policy.REJECTED: "rejected",
}
# Codes that only exist for the batch wrapper itself, not for one of its calls.
BATCH_ONLY = {"ERROR_BATCH_METHOD_NOT_ALLOWED", "ERROR_BATCH_LENGTH_EXCEEDED"}


def test_the_table_covers_the_documented_codes():
    documented = {
        "INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER", "QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT",
        "ERROR_BATCH_METHOD_NOT_ALLOWED", "ERROR_BATCH_LENGTH_EXCEEDED", "NO_AUTH_FOUND", "INVALID_REQUEST",
        "OVERLOAD_LIMIT", "ACCESS_DENIED", "INVALID_CREDENTIALS", "ERROR_MANIFEST_IS_NOT_AVAILABLE",
        "insufficient_scope", "expired_token", "user_access_error", "PORTAL_DELETED", "ERROR_METHOD_NOT_FOUND",
        "0", "100",
    }
    assert documented <= set(ERROR_TABLE)


@pytest.mark.parametrize("code", sorted(set(ERROR_TABLE) - BATCH_ONLY))
def test_each_code_gets_its_policy(code, ctx, simulator, user, redis, keys):
    task = user.add_task()
    policy = ERROR_TABLE[code].policy
    # Portal-wide errors fail the whole request; task errors come back for the one call.
    simulator.control.add_faults({"method": "tasks.task.result.list", "error": code, "count": 1})
    member = task_member(ctx.portal, task)
    ctx.tasks.schedule(member, at=0)
    (outcome,) = TaskSync(ctx).run_many(ctx.tasks.claim(1, 60, only=member))
    assert outcome.status == EXPECTED_STATUS[policy], (code, outcome)
    due = redis.zscore(keys.due("tasks"), member)
    if policy in (Policy.RETRY_SOON, Policy.RETRY_LATER, Policy.REAUTH, Policy.HALT_PORTAL):
        assert due is not None and due > ctx.clock()  # rescheduled, not hammered
    else:
        assert due is None  # dropped or rejected: no retry
    if policy is Policy.HALT_PORTAL:
        assert code in redis.get(keys.halted(ctx.portal)).decode()
    if policy is Policy.DROP_TASK:
        assert not redis.exists(keys.results(ctx.portal, task))
