"""A person working in the (simulated) portal, through its REST API like any outside client."""

from __future__ import annotations

from typing import Any

import httpx


class PortalUser:
    def __init__(self, webhook_url: str) -> None:
        self.http = httpx.Client(base_url=webhook_url, timeout=10)

    def call(self, method: str, params: dict[str, Any]) -> Any:
        payload = self.http.post(method, json=params).json()
        if "error" in payload:
            raise AssertionError(f"{method}: {payload}")
        return payload["result"]

    def add_task(self, title: str = "Sign the contract", responsible: int = 503, group: int = 0) -> int:
        task = self.call("tasks.task.add", {"fields": {"TITLE": title, "RESPONSIBLE_ID": responsible,
                                                       "CREATED_BY": 1, "GROUP_ID": group}})
        return int(task["task"]["id"])

    def comment(self, task_id: int, text: str, *, as_result: bool = False, author: int = 503) -> int:
        fields: dict[str, Any] = {"POST_MESSAGE": text, "AUTHOR_ID": author}
        if as_result:
            fields["AS_RESULT"] = "Y"
        return int(self.call("task.commentitem.add", {"TASKID": task_id, "FIELDS": fields}))

    def pin(self, comment_id: int) -> dict[str, Any]:
        return dict(self.call("tasks.task.result.addFromComment", {"commentId": comment_id}))

    def unpin(self, comment_id: int) -> None:
        self.call("tasks.task.result.deleteFromComment", {"commentId": comment_id})

    def complete(self, task_id: int) -> None:
        self.call("tasks.task.complete", {"taskId": task_id})

    def renew(self, task_id: int) -> None:
        self.call("tasks.task.renew", {"taskId": task_id})

    def delete(self, task_id: int) -> None:
        self.call("tasks.task.delete", {"taskId": task_id})

    def results(self, task_id: int) -> list[dict[str, Any]]:
        return list(self.call("tasks.task.result.list", {"taskId": task_id}))

    def close(self) -> None:
        self.http.close()
