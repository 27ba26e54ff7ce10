"""A Lua script whose calls made in one event-loop turn share one Redis round trip.

Under load, many webhook requests reach their ``schedule`` call in the same turn of the loop.
Sent one by one through redis-py, each paid its whole per-command cost: a pool checkout under a
lock, a retry wrapper, a send under a timeout task, a read under another, and a loop wake-up
for its answer; after parsing, that was most of an accepted event's time (bench/ingest.py).
:class:`ScriptBatch` queues the calls of one turn and sends them as one write of EVALSHAs on
one pooled connection (pipelining, no MULTI: each call stays its own script run), then reads
the answers in order. Each call still waits on exactly one round trip and gets its own result
or its own error: a script error answers only the call that raised it; a dropped connection or
a timeout, every call of that batch (redis-py's retries on a dropped connection are kept). A
lone call is a batch of one.

Like redis-py's ``AsyncScript``, it sends the script's SHA and loads the script only when Redis
answers NOSCRIPT (after a restart or SCRIPT FLUSH); only then does a call take two round trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import DataError, NoScriptError, ResponseError

Call = tuple[Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    """Call as redis-py's registered script is called: ``await batch(keys=[...], args=[...])``."""

    def __init__(self, redis: Redis, script: str) -> None:
        self.redis = redis
        self.script = redis.register_script(script)  # knows the SHA; loads the text on NOSCRIPT
        self.waiting: list[Call] = []
        self.sending: set[asyncio.Task[None]] = set()  # held, so a batch in flight is not collected

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self.waiting:
            loop.call_soon(self._send)  # after the other requests ready in this turn have queued
        self.waiting.append((keys, args, future))
        return await future

    def _send(self) -> None:
        batch, self.waiting = self.waiting, []
        task = asyncio.ensure_future(self._run(batch))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _run(self, batch: list[Call]) -> None:
        try:
            results = await self._execute([(keys, args) for keys, args, _ in batch])
        except BaseException as exc:  # every call of the batch learns what happened to it
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # its request went away
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _execute(self, calls: list[tuple[Sequence[Any], Sequence[Any]]]) -> list[Any]:
        results = await self._pipeline(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            self.script.sha = await self.redis.script_load(self.script.script)
            for i, result in zip(missing, await self._pipeline([calls[i] for i in missing]), strict=True):
                results[i] = result
        return results

    async def _pipeline(self, calls: list[tuple[Sequence[Any], Sequence[Any]]]) -> list[Any]:
        """Send the calls in one write on one pooled connection and read their answers in order:
        what redis-py's Pipeline (no MULTI) does, retries on a dropped connection included, without
        its command stack and general packer (most of its cost here)."""
        packed = b"".join(_pack_evalsha(self.script.sha, keys, args) for keys, args in calls)
        pool = self.redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py: untyped

        async def exchange() -> list[Any]:
            try:
                await connection.send_packed_command(packed)
                results: list[Any] = []
                for _ in calls:
                    try:
                        results.append(await connection.read_response())
                    except ResponseError as exc:  # this call's own error; the connection is fine
                        results.append(exc)
                return results
            except BaseException:
                # A timeout or a cancellation leaves answers unread: that connection is done.
                await connection.disconnect(nowait=True)
                raise

        async def dropped(error: Exception) -> None:
            await connection.disconnect(nowait=True)

        try:
            results: list[Any] = await connection.retry.call_with_retry(exchange, dropped)
            return results
        finally:
            await pool.release(connection)


def _pack_evalsha(sha: str, keys: Sequence[Any], args: Sequence[Any]) -> bytes:
    """``EVALSHA sha numkeys key… arg…`` in RESP, values encoded as redis-py's Encoder does.

    Built as text and encoded once: our keys and arguments are ASCII, whose length in characters
    is their length in bytes; anything else is carried through Latin-1, one character a byte."""
    words = [*keys, *args]
    parts = [f"*{len(words) + 3}\r\n$7\r\nEVALSHA\r\n${len(sha)}\r\n{sha}\r\n"
             f"${len(str(len(keys)))}\r\n{len(keys)}\r\n"]
    for word in words:
        kind = type(word)
        if kind is str and word.isascii():
            text = word
        elif kind is float or kind is int:
            text = repr(word)
        else:
            text = _encode(word).decode("latin-1")
        parts.append(f"${len(text)}\r\n{text}\r\n")
    return "".join(parts).encode("latin-1")


def _encode(value: Any) -> bytes:
    """redis-py's Encoder.encode (UTF-8, strict; a bool or another type is refused)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value).encode()
    raise DataError(f"Invalid input of type: '{type(value).__name__}'. Convert to a bytes, string, int or float first.")
