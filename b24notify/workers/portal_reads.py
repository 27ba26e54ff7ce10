"""The reads a sync needs from the portal, with the short Redis caches that keep them cheap:
the result list (never cached: it is the truth we diff), task details and user names (cached).
"""

from __future__ import annotations

from collections.abc import Iterable

from redis import Redis

from b24notify.keys import Keys, as_text
from b24notify.rest.client import RestClient
from b24notify.rest.errors import TaskGone
from b24notify.results import TaskResult, parse_results
from b24notify.task_info import TaskInfo, parse_task

TASK_FIELDS = ["ID", "TITLE", "RESPONSIBLE_ID", "GROUP_ID", "STATUS", "CREATED_BY"]


class PortalReads:
    def __init__(self, client: RestClient, redis: Redis, keys: Keys, *, task_ttl: int, user_ttl: int) -> None:
        self.client = client
        self.redis = redis
        self.keys = keys
        self.task_ttl = task_ttl
        self.user_ttl = user_ttl

    @property
    def portal(self) -> str:
        return self.client.portal

    def results(self, task_id: int) -> list[TaskResult]:
        answer = self.client.call_page("tasks.task.result.list", {"taskId": task_id})
        results = parse_results(answer.result)
        # PROTOCOL.md §3: the source returns every row, the docs hint at pages of 50. Follow
        # `next` if it ever appears, with a hard stop so a confused portal cannot loop us.
        start = answer.next
        pages = 1
        while start is not None and pages < 20:
            page = self.client.call_page("tasks.task.result.list", {"taskId": task_id, "start": start})
            results.extend(parse_results(page.result))
            start, pages = page.next, pages + 1
        return results

    def task(self, task_id: int) -> TaskInfo:
        key = self.keys.task_cache(self.portal, task_id)
        cached = self.redis.get(key)
        if cached:
            return TaskInfo.from_json(cached)
        raw = self.client.call("tasks.task.get", {"taskId": task_id, "select": TASK_FIELDS})
        if raw in ([], None, ""):
            # tasks.task.get answers `[]` for a missing or hidden task (PROTOCOL.md §4).
            raise TaskGone("0", "tasks.task.get returned no task", method="tasks.task.get")
        info = parse_task(raw)
        if self.task_ttl:
            self.redis.set(key, info.to_json(), ex=self.task_ttl)
        return info

    def forget_task(self, task_id: int) -> None:
        self.redis.delete(self.keys.task_cache(self.portal, task_id))

    def user_names(self, user_ids: Iterable[int]) -> dict[int, str]:
        wanted = sorted({u for u in user_ids if u > 0})
        if not wanted:
            return {}
        cached = self.redis.mget([self.keys.user_cache(self.portal, u) for u in wanted])
        names = {u: as_text(c) for u, c in zip(wanted, cached, strict=True) if c is not None}
        for uid in wanted:
            if uid in names:
                continue
            # One documented `user.get {ID}` per unknown author; names are cached for an hour, so
            # this is rare. (Whether FILTER accepts an ID list is undocumented.)
            rows = self.client.call("user.get", {"ID": uid}) or []
            row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
            name = " ".join(p for p in (str(row.get("NAME") or ""), str(row.get("LAST_NAME") or "")) if p)
            # Cache misses too, so a deleted user does not cost a call on every alert.
            names[uid] = name.strip() or f"user {uid}"
            self.redis.set(self.keys.user_cache(self.portal, uid), names[uid], ex=self.user_ttl or None)
        return names
