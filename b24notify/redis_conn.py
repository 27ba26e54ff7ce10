"""The one place the product makes Redis clients from REDIS_URL.

``redis://``, ``rediss://`` and ``unix://`` go to redis-py's ``from_url``. The Sentinel form
(``redis+sentinel://[[user]:password@]host1:26379,host2:26379/SERVICE_NAME/DB``) gives a client
whose pool asks the Sentinels for the primary at each new connection: when the primary dies, the
failed command's connection is dropped, redis-py's retry (exponential backoff) reconnects, and the
next connection goes to whatever the Sentinels name the primary then. A command that lands on a
demoted primary (READONLY) drops its connection the same way. Until Sentinel has promoted a
replica, commands fail with ConnectionError (MasterNotFoundError), which every caller already
handles as "Redis is down".
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.connection
import redis.sentinel
from redis.backoff import ExponentialWithJitterBackoff

from b24notify.settings.redis_url import SENTINEL_SCHEMES, SentinelUrl, parse_sentinel_url, scheme_of

# A Sentinel answers in microseconds on a healthy network; a dead one must not hold a connect for
# the command's own (longer) timeouts.
SENTINEL_TIMEOUT = 1.0
# A failover (down-after + election + promotion) takes seconds: retry long enough to ride a short
# one inside a single command, short enough that a caller sees an outage and backs off itself.
RETRIES = 4
BACKOFF_CAP = 2.0
BACKOFF_BASE = 0.25


class _SentinelConnection(redis.sentinel.SentinelManagedConnection):
    """redis-py 8.1's Sentinel connection reads with ``disconnect_on_error=False`` by default, unlike
    a plain connection: an exception during a read that is not a connection error (RQ's stop
    signal, a job timeout's SIGALRM) put the connection back in the pool with its reply still
    coming, and the next command read that reply (a BLPOP's job taken by an LLEN). Drop the
    connection on any error, as a plain connection does."""

    def read_response(self, disable_decoding: bool = False, *, disconnect_on_error: bool | None = True,
                      **kwargs: Any) -> Any:
        return super().read_response(
            disable_decoding=disable_decoding, disconnect_on_error=disconnect_on_error, **kwargs)


class _SentinelSSLConnection(_SentinelConnection, redis.connection.SSLConnection):
    pass


class _AsyncSentinelConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    """redis-py 8.1's asyncio ``send_packed_command`` reconnects through ``connect_check_health``,
    past the Sentinel connection's ``connect()``: after a failover it dialled the dead primary's
    address for ever. Ask the Sentinels on every new connection, as the sync client does."""

    async def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if not self.is_connected and self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)


class _AsyncSentinelSSLConnection(_AsyncSentinelConnection, redis.asyncio.connection.SSLConnection):
    pass


def is_sentinel_url(url: str) -> bool:
    return scheme_of(url) in SENTINEL_SCHEMES


def _sentinel_kwargs(parsed: SentinelUrl, options: dict[str, Any]) -> dict[str, Any]:
    timeout = min(float(options.get("socket_connect_timeout") or SENTINEL_TIMEOUT), SENTINEL_TIMEOUT)
    kwargs: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": timeout}
    if parsed.sentinel_password:
        kwargs["password"] = parsed.sentinel_password
    return kwargs


def _primary_kwargs(parsed: SentinelUrl, options: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(options)
    kwargs["db"] = parsed.db
    if parsed.username:
        kwargs["username"] = parsed.username
    if parsed.password:
        kwargs["password"] = parsed.password
    if parsed.ssl:
        kwargs["ssl"] = True
    return kwargs


def _retry(module: Any) -> Any:
    return module.Retry(ExponentialWithJitterBackoff(cap=BACKOFF_CAP, base=BACKOFF_BASE), RETRIES)


def connect(url: str, **options: Any) -> redis.Redis:
    """A sync client for REDIS_URL; ``options`` as for ``redis.Redis`` (timeouts, decode_responses...)."""
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **options)
    parsed = parse_sentinel_url(url)
    options.setdefault("retry", _retry(redis.retry))
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]  # redis-py's, untyped
        list(parsed.hosts), sentinel_kwargs=_sentinel_kwargs(parsed, options))
    kwargs = _primary_kwargs(parsed, options)
    kwargs["connection_class"] = _SentinelSSLConnection if kwargs.pop("ssl", False) else _SentinelConnection
    client: redis.Redis = sentinel.master_for(parsed.service, **kwargs)  # type: ignore[no-untyped-call]
    return client


def connect_async(url: str, **options: Any) -> redis.asyncio.Redis:
    """The asyncio twin of :func:`connect` (the web)."""
    if not is_sentinel_url(url):
        return redis.asyncio.Redis.from_url(url, **options)
    parsed = parse_sentinel_url(url)
    options.setdefault("retry", _retry(redis.asyncio.retry))
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.hosts), sentinel_kwargs=_sentinel_kwargs(parsed, options))
    kwargs = _primary_kwargs(parsed, options)
    kwargs["connection_class"] = _AsyncSentinelSSLConnection if kwargs.pop("ssl", False) else _AsyncSentinelConnection
    client: redis.asyncio.Redis = sentinel.master_for(parsed.service, **kwargs)
    return client
