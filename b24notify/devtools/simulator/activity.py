"""Scripted demo activity: people working on tasks, seen only through the portal's REST API.

``b24notify simulate`` runs it so b24notify has something to notify about: tasks are created,
results are posted as comments (an event), existing comments are pinned as results (no event at
all, docs/protocol.md §3), and tasks are completed, which closes their results. It talks to the webhook
like any outside client would, so fault rules and rate limits apply to it too.

Each task has a cast: someone creates it for another person (the responsible one, who writes its
comments and results) and one or two others audit it, so routes to the task's people (creator,
auditors) have someone to tell who did not cause the change. An ``opening`` cast makes the first two
steps fixed: that task is created, then its responsible person posts a result to it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

TITLES = (
    "Prepare the quarterly report", "Sign the supply contract", "Check the warehouse stock",
    "Update the price list", "Call the new client back", "Fix the invoice template",
)
RESULTS = (
    "The client signed the documents",
    "Sent documents to the client. The client promises to respond on [B]Monday[/B].",
    "Report uploaded to the drive",
    "Stock counted: [i]no shortages[/i]",
)
NOTES = ("Working on it", "Waiting for the accountant", "Draft attached", "Asked the client for details")


class ActivityError(Exception):
    """The portal answered a demo action with an error."""

    def __init__(self, method: str, code: str, description: str) -> None:
        self.code = code
        super().__init__(f"{method}: {code} {description}")


@dataclass(frozen=True)
class Cast:
    """The people of one task: who created it, who does it (and writes its comments), who audits it."""

    creator: int
    responsible: int
    auditors: tuple[int, ...] = ()

    def fields(self) -> dict[str, Any]:
        return {"CREATED_BY": self.creator, "RESPONSIBLE_ID": self.responsible, "AUDITORS": list(self.auditors)}


def random_cast(users: list[int], rng: random.Random) -> Cast:
    """A creator, a responsible person other than the creator, and one or two auditors who are
    neither (as many as there are people for)."""
    creator = rng.choice(users)
    others = [user for user in users if user != creator]
    responsible = rng.choice(others) if others else creator
    rest = [user for user in others if user != responsible]
    auditors = rng.sample(rest, min(len(rest), rng.randint(1, 2)))
    return Cast(creator, responsible, tuple(auditors))


@dataclass
class _Scene:
    """What the demo remembers about its own tasks between steps."""

    users: list[int] = field(default_factory=lambda: [1])
    open_tasks: list[int] = field(default_factory=list)
    with_results: set[int] = field(default_factory=set)
    completed: list[int] = field(default_factory=list)
    plain_comments: list[tuple[int, int]] = field(default_factory=list)  # (task, comment)
    responsible: dict[int, int] = field(default_factory=dict)  # task -> who writes its comments

    def forget(self, task_id: int) -> None:
        for tasks in (self.open_tasks, self.completed):
            if task_id in tasks:
                tasks.remove(task_id)
        self.with_results.discard(task_id)
        self.plain_comments = [(t, c) for t, c in self.plain_comments if t != task_id]


class _Actor:
    def __init__(self, http: httpx.Client, rng: random.Random, opening: Cast | None = None) -> None:
        self._http = http
        self._rng = rng
        self.scene = _Scene()
        self._script: list[Callable[[], None]] = []  # steps to take before the random ones, in order
        if opening is not None:
            self._script.append(lambda: self._open(opening))

    def call(self, method: str, params: Mapping[str, Any]) -> Any:
        response = self._http.post(method, json=params)
        try:
            payload = response.json()
        except ValueError:
            raise ActivityError(method, f"HTTP_{response.status_code}", "non-JSON answer") from None
        if "error" in payload:
            raise ActivityError(method, str(payload["error"]), str(payload.get("error_description", "")))
        return payload.get("result")

    def load_users(self) -> None:
        users = self.call("user.get", {"FILTER": {"ACTIVE": True}})
        ids = [int(u["ID"]) for u in users or []]
        self.scene.users = ids or [1]

    def step(self) -> None:
        if self._script:
            self._script.pop(0)()
            return
        scene, rng = self.scene, self._rng
        choices: list[tuple[str, int]] = [("create", 3 if len(scene.open_tasks) < 2 else 1)]
        if scene.open_tasks:
            choices += [("post_result", 3), ("post_note", 2)]
        if scene.plain_comments:
            choices.append(("pin", 2))
        if scene.with_results & set(scene.open_tasks):
            choices.append(("complete", 2))
        if scene.completed:
            choices.append(("renew", 1))
        action = rng.choices([name for name, _ in choices], weights=[w for _, w in choices])[0]
        getattr(self, f"_{action}")()

    def _open(self, cast: Cast) -> None:
        """The opening scene: a task with ``cast``, then (next step) a result posted to it."""
        task_id = self._create(cast)
        self._script.insert(0, lambda: self._post_result(task_id))

    def _create(self, cast: Cast | None = None) -> int:
        cast = cast or random_cast(self.scene.users, self._rng)
        fields = {"TITLE": self._rng.choice(TITLES), **cast.fields()}
        task = self.call("tasks.task.add", {"fields": fields})["task"]
        task_id = int(task["id"])
        self.scene.open_tasks.append(task_id)
        self.scene.responsible[task_id] = cast.responsible
        log.info("event=sim.activity action=task.add task=%d creator=%d responsible=%d auditors=%s", task_id,
                 cast.creator, cast.responsible, ",".join(map(str, cast.auditors)) or "-")
        return task_id

    def _comment(self, *, as_result: bool, task_id: int | None = None) -> tuple[int, int]:
        if task_id is None:
            task_id = self._rng.choice(self.scene.open_tasks)
        author = self.scene.responsible.get(task_id) or self._rng.choice(self.scene.users)
        fields = {"POST_MESSAGE": self._rng.choice(RESULTS if as_result else NOTES), "AUTHOR_ID": author}
        if as_result:
            fields["AS_RESULT"] = "Y"
        try:
            comment_id = int(self.call("task.commentitem.add", {"TASKID": task_id, "FIELDS": fields}))
        except ActivityError:
            self.scene.forget(task_id)
            raise
        return task_id, comment_id

    def _post_result(self, task_id: int | None = None) -> None:
        task_id, comment_id = self._comment(as_result=True, task_id=task_id)
        self.scene.with_results.add(task_id)
        log.info("event=sim.activity action=result.post task=%d comment=%d", task_id, comment_id)

    def _post_note(self) -> None:
        task_id, comment_id = self._comment(as_result=False)
        self.scene.plain_comments.append((task_id, comment_id))
        log.info("event=sim.activity action=comment.post task=%d comment=%d", task_id, comment_id)

    def _pin(self) -> None:
        task_id, comment_id = self.scene.plain_comments.pop(self._rng.randrange(len(self.scene.plain_comments)))
        result = self.call("tasks.task.result.addFromComment", {"commentId": comment_id})
        self.scene.with_results.add(task_id)
        log.info("event=sim.activity action=result.pin task=%d comment=%d result=%s (no event)",
                 task_id, comment_id, result["id"])

    def _complete(self) -> None:
        task_id = self._rng.choice(sorted(self.scene.with_results & set(self.scene.open_tasks)))
        self.scene.forget(task_id)
        self.call("tasks.task.complete", {"taskId": task_id})
        self.scene.completed.append(task_id)
        log.info("event=sim.activity action=task.complete task=%d", task_id)

    def _renew(self) -> None:
        task_id = self.scene.completed.pop(self._rng.randrange(len(self.scene.completed)))
        self.call("tasks.task.renew", {"taskId": task_id})
        self.scene.open_tasks.append(task_id)
        log.info("event=sim.activity action=task.renew task=%d", task_id)


def run_activity(
    webhook_url: str, stop: threading.Event, interval: float = 5.0, rng_seed: int | str | None = None,
    opening: Cast | None = None,
) -> None:
    """Act once every ``interval`` seconds until ``stop`` is set, starting with the ``opening``
    scene when given. A failed action is logged and the demo carries on: operators may be
    injecting faults on purpose."""
    rng = random.Random(rng_seed)
    with httpx.Client(base_url=webhook_url, timeout=10.0) as http:
        actor = _Actor(http, rng, opening)
        users_loaded = False
        while not stop.is_set():
            try:
                if not users_loaded:
                    actor.load_users()
                    users_loaded = True
                actor.step()
            except ActivityError as exc:
                log.warning("event=sim.activity.failed code=%s error=%s", exc.code, exc)
            except httpx.HTTPError as exc:
                log.warning("event=sim.activity.failed error=%s", type(exc).__name__)
            stop.wait(interval)
