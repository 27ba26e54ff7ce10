"""b24notify.redis_conn: REDIS_URL forms, and a real Sentinel topology (primary, replica, three
Sentinels on loopback) through a failover: the same client objects reconnect by themselves."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from collections.abc import Iterator

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from b24notify.redis_conn import connect, connect_async
from b24notify.scripts import LOCK_RELEASE
from b24notify.settings import ConfigError, load_settings
from b24notify.settings.redis_url import parse_sentinel_url
from tests.support.sentinel import FAILOVER_TIMEOUT_MS, SentinelTopology

SECRET = "s3cr%3At"  # URL-encoded "s3cr:t"


@pytest.mark.parametrize(("url", "hosts", "service", "db", "password", "ssl"), [
    ("redis+sentinel://h1:26379,h2:26380/mymaster/2", (("h1", 26379), ("h2", 26380)), "mymaster", 2, None, False),
    ("redis+sentinel://h1/mymaster", (("h1", 26379),), "mymaster", 0, None, False),
    ("redis+sentinel://:pw@h1:1,h2,h3:3/svc/0", (("h1", 1), ("h2", 26379), ("h3", 3)), "svc", 0, "pw", False),
    (f"rediss+sentinel://:{SECRET}@[::1]:26379,10.0.0.2/svc/15", (("::1", 26379), ("10.0.0.2", 26379)), "svc", 15,
     "s3cr:t", True),
    ("REDIS+SENTINEL://h1:26379/svc/1", (("h1", 26379),), "svc", 1, None, False),
])
def test_sentinel_urls_parse(url, hosts, service, db, password, ssl):
    parsed = parse_sentinel_url(url)
    assert (parsed.hosts, parsed.service, parsed.db, parsed.password, parsed.ssl) == (hosts, service, db, password, ssl)
    assert "pw" not in repr(parsed) and "s3cr" not in repr(parsed)


def test_username_and_sentinel_password():
    parsed = parse_sentinel_url("redis+sentinel://app:pw@h1/svc/3?sentinel_password=other")
    assert (parsed.username, parsed.password, parsed.sentinel_password) == ("app", "pw", "other")


@pytest.mark.parametrize(("url", "says"), [
    (f"redis+sentinel://:{SECRET}@/svc/0", "at least one host"),
    (f"redis+sentinel://:{SECRET}@h1:26379", "service name"),
    (f"redis+sentinel://:{SECRET}@h1:26379//0", "service name"),
    (f"redis+sentinel://:{SECRET}@h1:26379/svc/zero", "database number"),
    (f"redis+sentinel://:{SECRET}@h1:26379/svc/0/more", "database number"),
    (f"redis+sentinel://:{SECRET}@h1:port/svc/0", "port must be a number"),
    (f"redis+sentinel://:{SECRET}@h1:70000/svc/0", "port must be a number"),
    (f"redis+sentinel://:{SECRET}@h1,,h2/svc/0", "empty host"),
    (f"redis+sentinel://:{SECRET}@[::1/svc/0", "brackets"),
    (f"redis+sentinel://:{SECRET}@h1/svc/0?password={SECRET}", "only ?sentinel_password"),
])
def test_bad_sentinel_urls_say_why_and_never_echo_the_password(url, says):
    with pytest.raises(ValueError) as raised:
        parse_sentinel_url(url)
    assert says in str(raised.value)
    assert "s3cr" not in str(raised.value)
    with pytest.raises(ValueError) as raised:
        connect(url)
    assert "s3cr" not in str(raised.value)
    with pytest.raises(ConfigError) as config:
        load_settings(overrides={"redis_url": url})
    assert str(config.value).startswith("REDIS_URL: ") and "s3cr" not in str(config.value)


def test_settings_accept_every_form_and_refuse_others():
    for url in ("redis://h:6379/0", "rediss://:p@h:6380/1", "unix:///run/redis.sock?db=2",
                "redis+sentinel://h1:26379,h2:26379/mymaster/0", "rediss+sentinel://:p@h1/mymaster/4"):
        assert load_settings(overrides={"redis_url": url}).redis_url == url
    with pytest.raises(ConfigError, match="redis\\+sentinel://"):
        load_settings(overrides={"redis_url": f"http://:{SECRET}@h/0"})


def test_plain_urls_keep_redis_py_behaviour(redis_url):
    client = connect(redis_url, socket_timeout=3)
    try:
        assert client.ping()
        assert client.connection_pool.connection_kwargs["socket_timeout"] == 3
    finally:
        client.close()


@pytest.fixture
def topology() -> Iterator[SentinelTopology]:
    with SentinelTopology() as running:
        yield running


def test_the_same_clients_ride_a_failover_and_reload_their_scripts(topology):
    asyncio.run(_ride_a_failover(topology))


async def _ride_a_failover(topology: SentinelTopology) -> None:
    client = connect(topology.url(5), socket_timeout=2, socket_connect_timeout=2)
    web = connect_async(topology.url(5), socket_timeout=2, socket_connect_timeout=2)  # the web's kind
    release = LOCK_RELEASE.on(client)
    client.set("lock", "me")
    assert release(lock="lock", owner="me") == 1
    assert await web.incr("async") == 1
    client.set("before", "1")
    client.execute_command("WAIT", 1, 2000)  # the replica has it: the failover must not lose it
    sha = hashlib.sha1(LOCK_RELEASE.source.encode()).hexdigest()

    old = topology.kill_primary()
    killed = time.monotonic()
    # One command rides the failover inside redis-py's retry (exponential backoff, 4 retries); a
    # caller that gets a ConnectionError anyway retries as the product's loops do.
    while True:
        try:
            client.set("after", "1")
            break
        except RedisConnectionError:
            assert time.monotonic() - killed < 15
    pause = time.monotonic() - killed
    new = topology.wait_promoted(old, timeout=5)
    assert new != old
    print(f"write again {pause:.2f}s after SIGKILL of the primary (failover-timeout {FAILOVER_TIMEOUT_MS} ms)")
    assert pause < FAILOVER_TIMEOUT_MS / 1000 + 5
    assert client.get("before") == b"1"
    # The new primary never saw SCRIPT LOAD: EVALSHA gets NOSCRIPT, redis-py loads the text again.
    assert Redis(port=new).script_exists(sha) == [False]
    client.set("lock", "me")
    assert release(lock="lock", owner="me") == 1
    assert client.connection_pool.get_master_address() == ("127.0.0.1", new)
    client.close()
    # The asyncio client made before the failover: its connection to the dead primary is dropped,
    # the retry asks the Sentinels again.
    assert await web.incr("async") == 2
    await web.aclose()


def test_without_a_primary_commands_fail_fast_as_connection_errors(topology):
    """Replica and primary both gone: MasterNotFoundError (a ConnectionError: what the product
    handles as "Redis is down") after the bounded retries, never a hang."""
    client = connect(topology.url(0), socket_timeout=1, socket_connect_timeout=1)
    client.set("x", "1")
    topology.kill(topology.replica_port)
    topology.kill_primary()
    started = time.monotonic()
    with pytest.raises(RedisConnectionError):
        client.get("x")
    assert time.monotonic() - started < 10
    client.close()


class _Interrupted(BaseException):
    """What RQ's handlers raise from a signal: StopRequested (SIGTERM), JobTimeoutException (SIGALRM)."""


def _interrupt(signum: int, frame: object) -> None:
    raise _Interrupted


@pytest.mark.parametrize("scheme", ["redis", "redis+sentinel"])
def test_a_read_cut_by_a_signal_never_hands_its_reply_to_the_next_command(topology, scheme):
    """A BLPOP interrupted by a signal: its connection must not go back to the pool with the reply
    still coming, or the next command reads it (here: the job pushed later is swallowed by LLEN)."""
    url = topology.url(6) if scheme == "redis+sentinel" else f"redis://127.0.0.1:{topology.primary()}/6"
    client, other = connect(url), Redis(port=topology.primary(), db=6)
    client.rpush("list", "a", "b", "c")
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(_Interrupted):
            client.blpop(["queue"], timeout=2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    other.rpush("queue", "job-1")
    time.sleep(0.1)
    assert client.llen("list") == 3
    assert client.get("missing") is None
    assert other.lrange("queue", 0, -1) == [b"job-1"]  # nobody took the job
    client.close()
    other.close()
