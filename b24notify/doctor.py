"""``b24notify doctor``: what an operator checks first, in one command. Exit 0 when all is well."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError

from b24notify.channels.email import classify_smtp_error
from b24notify.deadletter import DeadLetters
from b24notify.dueset import DueSet, ParkedMember
from b24notify.keys import DELIVERIES, TASKS, Keys, as_text
from b24notify.portals.spec import require_channels
from b24notify.redis_conn import connect
from b24notify.rest.errors import B24Error
from b24notify.settings import ConfigError, Settings
from b24notify.settings.smtp import SmtpConfig
from b24notify.state_epoch import StateLoss
from b24notify.workers.context import WorkerContexts


def run_doctor(settings: Settings, out: Callable[[str], None] = print) -> int:
    problems = 0

    def check(name: str, ok: bool, detail: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        out(f"{'ok  ' if ok else 'FAIL'}  {name:<10} {detail}")

    def warn(name: str, detail: str) -> None:
        """Worth the operator's attention, but alerts flow: not a failure (exit code stays 0)."""
        out(f"warn  {name:<10} {detail}")

    try:
        require_channels(settings)
        check("config", True, f"{'app mode' if settings.app_mode else 'webhook mode'}, "
                              f"channels {', '.join(settings.channel_names) or 'per portal'}")
    except ConfigError as exc:
        check("config", False, str(exc))
        return 1
    if settings.smtp_url is not None:
        smtp = SmtpConfig.from_url(settings.smtp_url.get_secret_value())
        problem = smtp_problem(smtp)
        check("smtp", problem is None, f"{smtp.redacted_url()} " + (
            problem or ("accepts our login" if smtp.username else "answers")))
    keys = Keys(settings.b24notify_key_prefix)
    redis = connect(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
    try:
        redis.ping()
        version = str(redis.info("server").get("redis_version", "?"))
        check("redis", redis_version_ok(version), f"answers, version {version}"
              + ("" if redis_version_ok(version) else f" (needs {'.'.join(map(str, MIN_REDIS))} or later)"))
        for name, level, detail in redis_durability(redis):
            if level == "warn":
                warn(name, detail)
            else:
                check(name, level == "ok", detail)
        loss = StateLoss.from_mapping(redis.hgetall(keys.state_lost()))
        if loss is not None:
            warn("state", loss.describe())
        due = {name: redis.zcard(keys.due(name)) for name in (TASKS, DELIVERIES)}
        dead = DeadLetters(redis, keys).count()
        check("queues", True, f"tasks due {due[TASKS]}, deliveries due {due[DELIVERIES]}")
        check("deadletter", dead == 0, f"{dead} dead deliveries (b24notify deadletter list)")
        parked_tasks(DueSet(redis, keys, TASKS).parked(), check, out)
    except RedisError as exc:
        check("redis", False, f"unreachable: {type(exc).__name__}")
        redis.close()
        return 1
    contexts = WorkerContexts(settings, redis, serving=False)  # looks only: never sets connected_at
    try:
        served = contexts.all()
        check("portals", bool(served),
              f"{len(served)} served" if served else "none (app mode: nobody installed it yet)")
        for ctx in served:
            halted = redis.get(keys.halted(ctx.portal))
            check(ctx.portal, halted is None, "calls allowed" if halted is None else f"calls paused: {as_text(halted)}")
            user_id = ctx.spec.webhook.user_id if ctx.spec.webhook is not None else 1
            probes: list[tuple[str, dict[str, object], str]] = [
                ("user.get", {"ID": user_id}, "user"),
                ("tasks.task.list", {"select": ["ID"], "start": -1}, "task"),
            ]
            if ctx.spec.notify_chat:
                # Reading the alert chat needs scope im and membership of that chat, as posting does,
                # but posts nothing.
                probes.append(("im.dialog.messages.get", {"DIALOG_ID": ctx.spec.notify_chat, "LIMIT": 1}, "im"))
            else:
                check("  scope im", True, "not needed (no chat channel)")
            for method, params, scope in probes:
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


PARKED_SHOWN = 20  # doctor lists this many parked tasks, oldest first


def parked_tasks(parked: list[ParkedMember], check: Callable[[str, bool, str], None],
                 out: Callable[[str], None]) -> None:
    """Tasks that failed B24NOTIFY_TASK_MAX_ATTEMPTS times in a row and wait for an operator (or
    their next event): a FAIL, with each one's reason."""
    check("parked", not parked, f"{len(parked)} parked tasks" + (
        " (fix the cause; its next event, or `b24notify sync --task ID`, gives a task one more run)"
        if parked else ""))
    for item in parked[:PARKED_SHOWN]:
        since = datetime.fromtimestamp(item.at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        out(f"      {item.member} since {since}, {item.cause}, {item.strikes} strikes: {item.reason}")
    if len(parked) > PARKED_SHOWN:
        out(f"      … and {len(parked) - PARKED_SHOWN} more")


MIN_REDIS = (6, 2)  # ZADD LT/GT, SMISMEMBER and ZMSCORE; older servers fail every event with a script error
SMTP_PROBE_SECONDS = 5.0


def redis_durability(redis: Redis) -> list[tuple[str, str, str]]:
    """(check, ok|warn|FAIL, detail) for what b24notify needs of Redis to keep its state: no
    eviction (an evicted key is a task's known results, an outbox entry, a lease) and persistence
    (AOF, or replicas on a managed/HA setup). Without them a restart loses the state; b24notify
    notices (state_epoch.py) and starts over silently, and alerts of the gap are lost."""
    memory, persistence, replication = redis.info("memory"), redis.info("persistence"), redis.info("replication")
    policy = str(memory.get("maxmemory_policy", "noeviction"))
    evicts = policy != "noeviction"
    lines = [("redis mem", "FAIL" if evicts else "ok", f"maxmemory-policy {policy}" + (
        ": Redis may evict b24notify's state; set maxmemory-policy noeviction" if evicts else ""))]
    replicas = int(replication.get("connected_slaves", 0) or 0)
    if str(persistence.get("aof_enabled", "0")) == "1":
        lines.append(("redis disk", "ok", "AOF on"))
    elif replicas:
        lines.append(("redis disk", "ok", f"AOF off, {replicas} replica(s): make sure a failover promotes one"))
    else:
        lines.append(("redis disk", "warn", "AOF off and no replica: a Redis restart loses the state and the alerts "
                                            "of the gap; set appendonly yes (appendfsync everysec)"))
    return lines


def redis_version_ok(version: str) -> bool:
    parts = version.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        return True  # a server that hides its version (some managed ones) gets the benefit of the doubt
    return (int(parts[0]), int(parts[1])) >= MIN_REDIS


def smtp_problem(config: SmtpConfig, timeout: float = SMTP_PROBE_SECONDS) -> str | None:
    """Talk to SMTP_URL as a delivery would, up to the mail itself: connect, STARTTLS if asked,
    log in if a user is given, NOOP. None when all of it worked, else why (never the password)."""
    try:
        if config.use_ssl:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(config.host, config.port, timeout=timeout,
                                                  context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=timeout)
        try:
            if config.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.username is not None and config.password is not None:
                smtp.login(config.username, config.password)
            code, message = smtp.noop()
            if code != 250:
                raise smtplib.SMTPResponseException(code, message)
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
    except (smtplib.SMTPException, OSError) as exc:
        reason = classify_smtp_error(exc).reason
        return reason.replace(config.password, "***") if config.password else reason
    return None
