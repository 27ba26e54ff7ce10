"""A chat message leaves only once a replica holds its "in flight" mark (Redis WAIT), so that a
failover right after the send promotes a replica that knows to look in the chat before sending it
again (docs/guarantees.md "Redis failover"). Real primary, replica and Sentinels
(tests/support/sentinel.py); the replica is frozen with SIGSTOP to hold its acknowledgement back."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from b24notify.redis_conn import connect
from b24notify.workers.context import WorkerContext, build_context
from tests.support.netns import Netns
from tests.support.sentinel import SentinelTopology
from tests.support.servers import wait_for
from tests.test_delivery_retry import attempt, due_at, new_result, settle


@pytest.fixture
def topology() -> Iterator[SentinelTopology]:
    with SentinelTopology() as running:
        yield running


def replicated_ctx(make_settings, simulator, url: str, **overrides: object) -> WorkerContext:
    settings = make_settings(redis_url=url, b24_webhook_url=simulator.webhook_url,
                             b24_application_token=simulator.config.application_token, notify_chat="chat42",
                             b24notify_delivery_retry_seconds="10,60", **overrides)
    client = connect(settings.redis_url)
    client.set(f"{settings.b24notify_key_prefix}:portal:{settings.portal}:connected_at",
               (datetime.now(UTC) - timedelta(hours=1)).isoformat())
    return build_context(settings, client)


def freeze(topology: SentinelTopology, port: int, sig: signal.Signals) -> None:
    topology.processes[port].send_signal(sig)


def test_a_chat_message_waits_for_the_replica_to_hold_its_in_flight_mark(make_settings, simulator, user, topology):
    ctx = replicated_ctx(make_settings, simulator, topology.url(0), b24notify_replica_wait_ms=300)
    try:
        (chat,) = new_result(ctx, user)
        freeze(topology, topology.replica_port, signal.SIGSTOP)
        try:
            asked = time.time()
            assert attempt(ctx, chat) == "deferred"  # not sent: no replica acknowledged the mark
            assert simulator.control.messages() == []
            assert asked + 1.5 <= due_at(ctx, chat) <= asked + 3.5  # the 2 s "replica behind" retry
            assert not ctx.redis.hexists(ctx.keys.delivery(chat), "in_flight")  # nothing went out
            assert int(ctx.redis.hget(ctx.keys.delivery(chat), "attempts") or 0) == 0
        finally:
            freeze(topology, topology.replica_port, signal.SIGCONT)
        assert settle(ctx, chat, timeout=10) == ["sent"]
        assert len(simulator.control.messages()) == 1
    finally:
        ctx.close()


def test_with_no_replica_connected_a_send_does_not_wait(make_settings, simulator, user, topology):
    """A primary whose replica is gone (and dropped by it) sends: the wait is for a replica that
    exists, not a stop of every chat alert; and the next sends skip the WAIT for a while."""
    ctx = replicated_ctx(make_settings, simulator, topology.url(0), b24notify_replica_wait_ms=1000)
    try:
        (chat,) = new_result(ctx, user)
        topology.kill(topology.replica_port)
        primary = Redis(port=topology.primary_port)
        wait_for(lambda: primary.info("replication")["connected_slaves"] == 0, 10, "the primary kept its replica")
        primary.close()
        started = time.monotonic()
        assert attempt(ctx, chat) == "sent"
        waited = time.monotonic() - started
        assert 1.0 <= waited < 4.0, waited  # one WAIT ran out, then the primary said: no replica
        assert len(simulator.control.messages()) == 1
        (second,) = new_result(ctx, user)
        started = time.monotonic()
        assert attempt(ctx, second) == "sent"
        assert time.monotonic() - started < 0.9  # no WAIT for a while: it would only run out again
        assert len(simulator.control.messages()) == 2
    finally:
        ctx.close()


def drop_primary_link(netns: Netns, topology: SentinelTopology) -> None:
    done = subprocess.run([*netns.prefix, "redis-cli", "-h", netns.ns_address, "-p", str(topology.replica_port),
                           "CLIENT", "KILL", "TYPE", "master"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0 and done.stdout.strip() == "1", (done.stdout, done.stderr)


@pytest.mark.parametrize("wait_ms, sent", [(0, 2), (1000, 1)], ids=["no-wait-doubles", "wait-sends-once"])
def test_a_primary_lost_right_after_a_chat_send_doubles_it_only_without_the_wait(make_settings, simulator, user,
                                                                                 wait_ms, sent):
    """The race the WAIT closes, made certain: the replica (in its own network namespace) is cut
    off, so what the primary writes never reaches it; a chat delivery runs; the primary dies; the
    link comes back and the replica is promoted. Without the WAIT the message went out with its
    in-flight mark only on the dead primary: the promoted replica sends it again. With it, the
    send waited for the replica, did not happen, and the delivery goes once after the failover."""
    with Netns() as netns, SentinelTopology(replica_in=netns) as topology:
        ctx = replicated_ctx(make_settings, simulator, topology.url(0), b24notify_replica_wait_ms=wait_ms)
        try:
            (chat,) = new_result(ctx, user)
            primary = Redis(port=topology.primary_port)
            primary.wait(1, 5000)  # the delivery is on the replica, as it would be a moment later
            primary.close()
            netns.cut()
            assert attempt(ctx, chat) == ("sent" if wait_ms == 0 else "deferred")
            old = topology.kill_primary()
            # The host died with the link down: what it had not delivered is gone. Here the
            # killed primary's kernel would still retransmit it when the link comes back, so the
            # replica first drops that link (as it would after repl-timeout), then the link returns.
            drop_primary_link(netns, topology)
            netns.restore()
            topology.wait_promoted(old, timeout=30)
            settle(ctx, chat, timeout=30)
        finally:
            ctx.close()
    assert len(simulator.control.messages()) == sent
