"""An Alert: one result change worth telling people about, with everything a channel needs to
render it. Built once by the sync job, stored in the outbox, rendered per channel at delivery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from b24notify.diff import ChangeKind
from b24notify.results import TaskResult, parse_result
from b24notify.task_info import TaskInfo


@dataclass(frozen=True)
class Alert:
    portal: str  # the portal's id in our keys: its domain, e.g. "acme.bitrix24.com"
    portal_url: str  # "https://acme.bitrix24.com", no trailing slash
    kind: ChangeKind
    change_key: str  # ResultChange.key
    task: TaskInfo
    result: TaskResult
    author_name: str  # who pinned the result, "" when unknown

    @property
    def task_url(self) -> str:
        return self.portal_url + self.task.path()

    @property
    def key(self) -> str:
        """Unique per portal, task and change; a delivery is (key, channel)."""
        return f"{self.portal}:{self.task.id}:{self.change_key}"

    def to_json(self) -> str:
        r = self.result
        return json.dumps(
            {
                "portal": self.portal,
                "portal_url": self.portal_url,
                "kind": self.kind.value,
                "change_key": self.change_key,
                "task": json.loads(self.task.to_json()),
                "author_name": self.author_name,
                "result": {
                    "id": r.id,
                    "taskId": r.task_id,
                    "commentId": r.comment_id,
                    "createdBy": r.created_by,
                    "createdAt": r.created_at.isoformat(),
                    "updatedAt": r.updated_at.isoformat() if r.updated_at else None,
                    "status": r.status,
                    "text": r.text,
                    "formattedText": r.formatted_text,
                    "files": list(r.files),
                },
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Alert:
        data = json.loads(raw)
        return cls(
            portal=data["portal"],
            portal_url=data["portal_url"],
            kind=ChangeKind(data["kind"]),
            change_key=data["change_key"],
            task=TaskInfo(**data["task"]),
            result=parse_result(data["result"]),
            author_name=data["author_name"],
        )


def sample_alert(kind: ChangeKind = ChangeKind.NEW, *, title: str = "Sign the contract", text: str = "Done",
                 formatted_text: str = "Done", closed: bool = False) -> Alert:
    """A realistic Alert for tests, benchmarks and template previews."""
    task = TaskInfo(id=8017, title=title, responsible_id=503, group_id=0, status=2, created_by=1)
    result = TaskResult(
        id=23, task_id=8017, comment_id=3197, created_by=503,
        created_at=datetime.fromisoformat("2025-07-15T14:30:00+02:00"),
        updated_at=datetime.fromisoformat("2025-08-19T16:45:48+02:00"),
        status=1 if closed else 0, text=text, formatted_text=formatted_text, files=(1055, 1057),
    )
    return Alert(portal="acme.bitrix24.com", portal_url="https://acme.bitrix24.com", kind=kind,
                 change_key=f"23:{kind.value}", task=task, result=result, author_name="Anna Smith")
