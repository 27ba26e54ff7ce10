"""``b24notify worker-alive``: does a worker run on this host? The container healthcheck.

RQ registers each worker in Redis with its host name and refreshes a heartbeat while its loop
runs; the worker's record expires ``worker_ttl + 60`` seconds after the last one (RQ's defaults:
within 8 minutes), and a worker that stops cleanly removes it at once. So a record of this host,
for our queue, with a recent heartbeat means a worker process here is alive and looping. (Pinging
Redis, the old healthcheck, said nothing about the worker.)
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker

from b24notify.redis_conn import connect
from b24notify.settings import Settings


@dataclass(frozen=True)
class LiveWorker:
    name: str
    pid: int | None
    heartbeat_age: float  # seconds since its last heartbeat


def live_workers(redis: Redis, queue_name: str, hostname: str, now: datetime | None = None) -> list[LiveWorker]:
    """Workers of ``queue_name`` on ``hostname`` whose heartbeat is still within RQ's TTL."""
    now = now or datetime.now(UTC)
    found = []
    for worker in Worker.all(queue=Queue(queue_name, connection=redis)):
        if worker.hostname != hostname or worker.last_heartbeat is None:
            continue
        beat = worker.last_heartbeat
        age = (now - (beat if beat.tzinfo else beat.replace(tzinfo=UTC))).total_seconds()
        if age <= worker.worker_ttl + 60:
            found.append(LiveWorker(worker.name, worker.pid, age))
    return found


def worker_alive(settings: Settings, out: Callable[[str], None] = print, hostname: str | None = None) -> int:
    """0 when a worker on this host is alive, 1 when none is (or Redis cannot tell)."""
    host = hostname or socket.gethostname()
    redis = connect(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
    try:
        workers = live_workers(redis, settings.b24notify_queue, host)
    except RedisError as exc:
        out(f"cannot ask Redis: {type(exc).__name__}")
        return 1
    finally:
        redis.close()
    if not workers:
        out(f"no live worker of queue {settings.b24notify_queue} on {host}")
        return 1
    for worker in workers:
        out(f"worker {worker.name} (pid {worker.pid}) alive, last heartbeat {worker.heartbeat_age:.0f}s ago")
    return 0
