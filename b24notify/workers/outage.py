"""Claims handed back when Redis fails under the work that holds them.

A job (or the dispatcher between its claim and the job's enqueue) that ends because Redis failed
(an outage or a failover longer than the client's retries) would leave its claims leased until the
lease runs out (120 s by default) before another worker takes them. Instead they are made due now
as soon as Redis answers again."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from b24notify.dueset import Claim, DueSet

log = logging.getLogger(__name__)

FIRST_WAIT = 0.5  # between tries while Redis does not answer, doubling up to
MAX_WAIT = 4.0


@contextmanager
def returned_on_outage(due: DueSet, claims: list[Claim], within: float) -> Iterator[None]:
    """On a Redis connection error or timeout, hand ``claims`` back as due now once Redis answers,
    trying for at most ``within`` seconds, then re-raise. A claim the work finished, or lost
    meanwhile, is no longer its own: the release checks the fencing token and leaves it alone.
    Running a claim again is what its reaping would do, only sooner (a chat send is looked up
    first, an e-mail keeps its Message-ID)."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        _give_back(due, claims, within, type(exc).__name__)
        raise


def _give_back(due: DueSet, claims: list[Claim], within: float, error: str) -> None:
    end = time.monotonic() + within
    wait = FIRST_WAIT
    while True:
        try:
            returned = sum(due.retry(claim, due.clock()) for claim in claims)
        except RedisError:
            if time.monotonic() + wait > end:
                log.warning("event=claims.kept set=%s claims=%d error=%s reason=%r", due.name, len(claims),
                            error, "Redis did not answer in time: they return when their lease ends")
                return
            time.sleep(wait)
            wait = min(wait * 2, MAX_WAIT)
            continue
        log.warning("event=claims.returned set=%s claims=%d returned=%d error=%s", due.name, len(claims),
                    returned, error)
        return
