"""How a failed ``im.message.add`` is sorted: a wait for our own limits, a passing fault, trouble
someone must fix, or a refusal for good."""

from __future__ import annotations

import time

from b24notify.channels.base import DeliveryDeferred, PermanentDeliveryError, RetryableDeliveryError
from b24notify.channels.chat import classify_chat_error
from b24notify.rest.errors import BudgetSpent, OperationTimeLimit, classify


def test_our_own_budget_is_a_wait_not_a_failure():
    error = classify_chat_error(BudgetSpent(0.6, method="batch"), whole_request=True)
    assert isinstance(error, DeliveryDeferred)
    assert error.retry_after == 0.6 and not error.uncertain


def test_a_method_paused_until_its_time_budget_resets_waits_for_that():
    paused = OperationTimeLimit("OPERATION_TIME_LIMIT", "paused by b24notify")
    paused.reset_at = time.time() + 30
    error = classify_chat_error(paused, whole_request=True)
    assert isinstance(error, DeliveryDeferred)
    assert 28 < error.retry_after <= 30


def test_passing_faults_are_transient_and_a_lost_answer_is_uncertain():
    whole = classify_chat_error(classify("INTERNAL_SERVER_ERROR", status=500), whole_request=True)
    assert isinstance(whole, RetryableDeliveryError) and whole.transient and whole.uncertain
    one_of_a_batch = classify_chat_error(classify("INTERNAL_SERVER_ERROR", status=500))
    assert isinstance(one_of_a_batch, RetryableDeliveryError) and one_of_a_batch.transient
    assert not one_of_a_batch.uncertain
    full_bucket = classify_chat_error(classify("QUERY_LIMIT_EXCEEDED", status=503), whole_request=True)
    assert isinstance(full_bucket, RetryableDeliveryError) and full_bucket.transient


def test_credential_trouble_waits_the_long_steps_and_refusals_are_permanent():
    auth = classify_chat_error(classify("NO_AUTH_FOUND", status=401), whole_request=True)
    assert isinstance(auth, RetryableDeliveryError) and not auth.transient
    assert isinstance(classify_chat_error(classify("ACCESS_ERROR", status=400)), PermanentDeliveryError)
