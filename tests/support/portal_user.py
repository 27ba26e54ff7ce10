"""A person working in the (simulated) portal, through its REST API like any outside client.

``PortalUser(webhook_url)`` acts as the webhook's user (the simulator's admin, user 1). Calls
made ``by=`` another user go through that user's own incoming webhook, which the simulator's
control API makes on first use: that is how the portal learns who completed a task
(``closedBy``) or who changed it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from b24notify.devtools.simulator import SimulatorControl


class PortalUser:
    def __init__(self, webhook_url: str) -> None:
        self.webhook_url = webhook_url.rstrip("/") + "/"
        self.http = httpx.Client(base_url=self.webhook_url, timeout=10)
        self._others: dict[int, PortalUser] = {}
        self._control: SimulatorControl | None = None

    @property
    def user_id(self) -> int:
        """Whom this webhook acts as: ``…/rest/{user_id}/{code}/``."""
        return int(httpx.URL(self.webhook_url).path.rstrip("/").split("/")[-2])

    def as_user(self, user_id: int | None) -> PortalUser:
        """The same person's portal, seen by ``user_id`` (this one for None or our own id)."""
        if user_id is None or user_id == self.user_id:
            return self
        if user_id not in self._others:
            if self._control is None:
                url = httpx.URL(self.webhook_url)
                self._control = SimulatorControl(f"{url.scheme}://{url.netloc.decode()}")
            self._others[user_id] = PortalUser(self._control.webhook_url(user_id))
        return self._others[user_id]

    def call(self, method: str, params: dict[str, Any]) -> Any:
        payload = self.http.post(method, json=params).json()
        if "error" in payload:
            raise AssertionError(f"{method}: {payload}")
        return payload["result"]

    def add_task(
        self,
        title: str = "Sign the contract",
        responsible: int = 503,
        group: int = 0,
        *,
        created_by: int = 1,
        accomplices: Iterable[int] = (),
        auditors: Iterable[int] = (),
        group_id: int | None = None,
        by: int | None = None,
    ) -> int:
        """``group_id`` is ``group`` by its REST name (it wins when both are given)."""
        fields: dict[str, Any] = {"TITLE": title, "RESPONSIBLE_ID": responsible, "CREATED_BY": created_by,
                                  "GROUP_ID": group if group_id is None else group_id}
        if accomplices:
            fields["ACCOMPLICES"] = list(accomplices)
        if auditors:
            fields["AUDITORS"] = list(auditors)
        task = self.as_user(by).call("tasks.task.add", {"fields": fields})
        return int(task["task"]["id"])

    def update(self, task_id: int, *, by: int | None = None, **fields: Any) -> dict[str, Any]:
        """``tasks.task.update`` with REST field names, e.g. ``update(t, AUDITORS=[505], STATUS=4)``."""
        return dict(self.as_user(by).call("tasks.task.update", {"taskId": task_id, "fields": fields})["task"])

    def task(self, task_id: int, select: Iterable[str] = ()) -> dict[str, Any]:
        """``tasks.task.get``'s task (camelCase keys, ids as strings)."""
        params: dict[str, Any] = {"taskId": task_id}
        if select:
            params["select"] = list(select)
        return dict(self.call("tasks.task.get", params)["task"])

    def comment(self, task_id: int, text: str, *, as_result: bool = False, author: int = 503) -> int:
        fields: dict[str, Any] = {"POST_MESSAGE": text, "AUTHOR_ID": author}
        if as_result:
            fields["AS_RESULT"] = "Y"
        return int(self.call("task.commentitem.add", {"TASKID": task_id, "FIELDS": fields}))

    def pin(self, comment_id: int, *, by: int | None = None) -> dict[str, Any]:
        """Pin a comment as the result; whoever pins becomes the result's author."""
        return dict(self.as_user(by).call("tasks.task.result.addFromComment", {"commentId": comment_id}))

    def unpin(self, comment_id: int) -> None:
        self.call("tasks.task.result.deleteFromComment", {"commentId": comment_id})

    def complete(self, task_id: int, *, by: int | None = None) -> None:
        """Complete the task as ``by`` (this webhook's user when None): the task's ``closedBy``."""
        self.as_user(by).call("tasks.task.complete", {"taskId": task_id})

    def renew(self, task_id: int, *, by: int | None = None) -> None:
        self.as_user(by).call("tasks.task.renew", {"taskId": task_id})

    def delete(self, task_id: int) -> None:
        self.call("tasks.task.delete", {"taskId": task_id})

    def results(self, task_id: int) -> list[dict[str, Any]]:
        return list(self.call("tasks.task.result.list", {"taskId": task_id}))

    def close(self) -> None:
        for other in self._others.values():
            other.close()
        self._others.clear()
        if self._control is not None:
            self._control.close()
            self._control = None
        self.http.close()
