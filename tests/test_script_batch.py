"""ScriptBatch (service/batching.py): the webhook's schedule calls of one loop turn share one
round trip, and each still gets its own answer or its own error. Real Redis throughout."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from b24notify.phpform import encode_php_query
from b24notify.service.app import create_app
from b24notify.service.batching import ScriptBatch
from tests.test_webhook import DOMAIN, FORM, TOKEN, event

# A fresh comment makes a fresh SHA: Redis has never seen the script, so the first call meets NOSCRIPT.
ADD = "-- {tag}\nif ARGV[1] == 'bad' then return redis.error_reply('refused') end\n" \
      "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def fresh_script() -> str:
    return ADD.format(tag=uuid.uuid4().hex)


async def connections_named(admin: Redis, name: str) -> int:
    return sum(1 for client in await admin.client_list() if client.get("name") == name)


def test_calls_of_one_loop_turn_get_their_own_answers_over_one_connection(redis_url: str, key_prefix: str) -> None:
    async def scenario() -> None:
        name = f"batch-{uuid.uuid4().hex[:8]}"
        client = Redis.from_url(redis_url, client_name=name)
        batch = ScriptBatch(client, fresh_script())
        try:
            answers = await asyncio.gather(*(batch(keys=[f"{key_prefix}:n{i}"], args=[i + 1]) for i in range(20)))
            assert answers == [i + 1 for i in range(20)]
            # Twenty requests at once, one connection: they went together, not one by one.
            assert await connections_named(client, name) == 1
            assert await client.script_exists(batch.script.sha) == [True]  # loaded on NOSCRIPT
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_script_error_fails_only_its_own_call(redis_url: str, key_prefix: str) -> None:
    async def scenario() -> None:
        client = Redis.from_url(redis_url)
        batch = ScriptBatch(client, fresh_script())
        try:
            answers = await asyncio.gather(batch(keys=[f"{key_prefix}:a"], args=[2]),
                                           batch(keys=[f"{key_prefix}:b"], args=["bad"]),
                                           batch(keys=[f"{key_prefix}:c"], args=[3]), return_exceptions=True)
            assert answers[0] == 2 and answers[2] == 3
            assert isinstance(answers[1], ResponseError) and "refused" in str(answers[1])
            assert await batch(keys=[f"{key_prefix}:a"], args=[1]) == 3  # the connection still serves
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_redis_unreachable_fails_every_call_of_the_batch_with_a_redis_error() -> None:
    async def scenario() -> None:
        client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens on port 1
        batch = ScriptBatch(client, fresh_script())
        try:
            answers = await asyncio.gather(*(batch(keys=["k"], args=[1]) for _ in range(3)), return_exceptions=True)
            assert all(isinstance(answer, RedisError) for answer in answers), answers
            assert all(isinstance(answer, RedisConnectionError) for answer in answers)
        finally:
            await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("concurrent", [1, 24])
def test_concurrent_webhook_events_are_each_accepted_with_their_own_answer(
        make_settings, redis, concurrent: int) -> None:
    settings = make_settings(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN,
                             b24notify_debounce_seconds=1.0)

    async def scenario() -> list[httpx.Response]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                posts = [http.post("/webhooks/bitrix24", headers=FORM,
                                   content=encode_php_query(event("ONTASKUPDATE", task=100 + i % 12)))
                         for i in range(concurrent)]
                return list(await asyncio.gather(*posts))

    answers = asyncio.run(scenario())
    assert [a.status_code for a in answers] == [200] * concurrent
    bodies = [a.json() for a in answers]
    assert [b["task"] for b in bodies] == [100 + i % 12 for i in range(concurrent)]
    assert all(b["status"] == "accepted" for b in bodies)
    for answer, body in zip(answers, bodies, strict=True):  # byte for byte what JSONResponse sent
        assert isinstance(body["coalesced"], bool)
        assert answer.content == json.dumps(body, separators=(",", ":")).encode()
        assert answer.headers["content-type"] == "application/json"


@pytest.mark.parametrize(("keys", "args"), [
    (["t:tasks:due", "t:watch:acme.bitrix24.com:active"], ["t|acme|7", 1.5e9 + 0.25, "0", 7, 30.0, 0, -3]),
    (["ключ"], ["é", b"\xff\x00", 2**70, float("inf"), ""]),
    ([], []),
])
def test_the_batch_sends_what_redis_py_would_send(keys: list[object], args: list[object]) -> None:
    from redis.asyncio.connection import Connection

    from b24notify.service.batching import _pack_evalsha

    sha = "0" * 40
    redis_py = b"".join(Connection().pack_command("EVALSHA", sha, len(keys), *keys, *args))
    assert _pack_evalsha(sha, keys, args) == redis_py
