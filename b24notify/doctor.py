"""``b24notify doctor``: what an operator checks first, in one command. Exit 0 when all is well."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

from b24notify.keys import DELIVERIES, TASKS, Keys, as_text
from b24notify.rest.errors import B24Error
from b24notify.settings import ConfigError, Settings
from b24notify.workers.context import WorkerContexts


def run_doctor(settings: Settings, out: Callable[[str], None] = print) -> int:
    problems = 0

    def check(name: str, ok: bool, detail: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        out(f"{'ok  ' if ok else 'FAIL'}  {name:<10} {detail}")

    try:
        settings.require_channels()
        check("config", True, f"{'app mode' if settings.app_mode else 'webhook mode'}, "
                              f"channels {', '.join(settings.channel_names) or 'per portal'}")
    except ConfigError as exc:
        check("config", False, str(exc))
        return 1
    keys = Keys(settings.b24notify_key_prefix)
    redis = Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
    try:
        redis.ping()
        check("redis", True, "answers")
        due = {name: redis.zcard(keys.due(name)) for name in (TASKS, DELIVERIES)}
        dead = redis.zcard(keys.deadletter())
        check("queues", True, f"tasks due {due[TASKS]}, deliveries due {due[DELIVERIES]}")
        check("deadletter", dead == 0, f"{dead} dead deliveries (b24notify deadletter list)")
    except RedisError as exc:
        check("redis", False, f"unreachable: {type(exc).__name__}")
        redis.close()
        return 1
    contexts = WorkerContexts(settings, redis)
    try:
        served = contexts.all()
        check("portals", bool(served),
              f"{len(served)} served" if served else "none (app mode: nobody installed it yet)")
        for ctx in served:
            halted = redis.get(keys.halted(ctx.portal))
            check(ctx.portal, halted is None, "calls allowed" if halted is None else f"calls paused: {as_text(halted)}")
            user_id = ctx.spec.webhook.user_id if ctx.spec.webhook is not None else 1
            for method, params, scope in (
                ("user.get", {"ID": user_id}, "user"),
                ("tasks.task.list", {"select": ["ID"], "start": -1}, "task"),
            ):
                try:
                    ctx.client.call(method, params)
                    check(f"  scope {scope}", True, f"{method} answers")
                except B24Error as exc:
                    check(f"  scope {scope}", False,
                          f"{method}: {exc.code} {exc.description} (policy {exc.policy.value})")
    finally:
        contexts.close()
        redis.close()
    return 1 if problems else 0
