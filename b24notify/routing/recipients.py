"""Who gets what from one sync of one task: the alerts, the routes, the people → notices.

Rules (README "Who gets alerts"):
* every route whose kinds and projects match a change adds its recipients;
* a person reached by several routes or roles gets the change once per channel (a personal
  notification and an e-mail are two channels); an e-mail address reached as a person and as a
  fixed target gets it once;
* never the person who caused the change: the result's author for ``new`` and ``edited``, the
  task's ``CLOSED_BY`` for ``closed`` (when the portal gives it); inactive people get nothing;
* a person's preferences (mute, kinds, channels, language) apply to them;
* what one recipient gets on one channel from one sync is one notice (a digest), in their
  language: the reader's preference, else the portal's language.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from b24notify.alerts import Alert
from b24notify.diff import ChangeKind
from b24notify.notices import Notice, Target
from b24notify.people import Person
from b24notify.routing.rules import Route
from b24notify.task_info import TaskInfo


class Preferences(Protocol):
    """A person's preferences (b24notify/prefs.py)."""

    @property
    def language(self) -> str | None: ...

    def decide(self, kind: str, channel: str) -> str | None:
        """None when the person takes ``kind`` on ``channel`` (chat | email), else why not."""
        ...


@dataclass
class Routed:
    notices: list[Notice] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> (change, recipient, channel)s
    without_email: set[int] = field(default_factory=set)  # people to e-mail with no address


def role_members(role: str, task: TaskInfo, alert: Alert) -> tuple[int, ...]:
    if role == "creator":
        return (task.created_by,)
    if role == "responsible":
        return (task.responsible_id,)
    if role == "accomplices":
        return task.accomplices
    if role == "auditors":
        return task.auditors
    if role == "author":
        return (alert.result.created_by,)
    raise ValueError(f"unknown role {role!r}")


def actor(alert: Alert, task: TaskInfo) -> int:
    """Who caused the change (0: unknown)."""
    if alert.kind is ChangeKind.CLOSED:
        return task.closed_by
    return alert.result.created_by


def people_needed(routes: Sequence[Route], task: TaskInfo, authors: Iterable[int]) -> set[int]:
    """The user ids routing needs details of (name, e-mail, active): the people of the roles the
    routes name; ``authors``: the authors of the results that changed."""
    roles = {role for route in routes for role in route.roles}
    needed = {uid for role in roles - {"author"} for uid in _task_role(role, task)}
    if "author" in roles:
        needed |= set(authors)
    return {uid for uid in needed if uid > 0}


def _task_role(role: str, task: TaskInfo) -> tuple[int, ...]:
    return {"creator": (task.created_by,), "responsible": (task.responsible_id,), "accomplices": task.accomplices,
            "auditors": task.auditors}[role]


def route(alerts: Sequence[Alert], *, task: TaskInfo, routes: Sequence[Route], people: Mapping[int, Person],
          prefs: Mapping[int, Preferences], language: str, default_kinds: Sequence[str],
          default_via: Sequence[str]) -> Routed:
    routed = Routed()
    found: dict[str, tuple[Target, str, list[Alert]]] = {}  # dedupe key -> target, language, alerts
    considered: set[tuple[str, int, str]] = set()  # (change, person, via): each decided once

    def add(target: Target, dedupe: str, reader_language: str, alert: Alert) -> None:
        entry = found.setdefault(dedupe, (target, reader_language, []))
        if all(a.change_key != alert.change_key for a in entry[2]):
            entry[2].append(alert)

    for alert in alerts:
        kind = alert.kind.value
        for rule in routes:
            if not rule.applies(kind, task.group_id, default_kinds):
                continue
            for target in rule.targets:
                dedupe = f"email:{target.address.lower()}" if target.channel == "email" else target.key
                add(target, dedupe, language, alert)
            for role in rule.roles:
                for uid in role_members(role, task, alert):
                    for via in rule.via or default_via:
                        if (alert.change_key, uid, via) in considered:
                            continue
                        considered.add((alert.change_key, uid, via))
                        reason, reached, reader_language = _reach(uid, via, alert, task, people, prefs, language)
                        if reached is None:
                            if reason == "no_email":
                                routed.without_email.add(uid)
                            routed.skipped[reason or "unknown"] += 1
                            continue
                        dedupe = f"email:{reached.address.lower()}" if reached.channel == "email" else reached.key
                        add(reached, dedupe, reader_language, alert)
    for target, reader_language, picked in found.values():
        order = {a.change_key: i for i, a in enumerate(alerts)}
        routed.notices.append(Notice(tuple(sorted(picked, key=lambda a: order[a.change_key])), target,
                                     reader_language))
    return routed


def _reach(uid: int, via: str, alert: Alert, task: TaskInfo, people: Mapping[int, Person],
           prefs: Mapping[int, Preferences], language: str) -> tuple[str | None, Target | None, str]:
    """Why ``uid`` is not told of ``alert`` by ``via``, or the target and language to tell them in."""
    if uid <= 0:
        return "no_person", None, language
    if uid == actor(alert, task):
        return "actor", None, language
    person = people.get(uid)
    if person is None or not person.active:
        return "inactive", None, language
    preference = prefs.get(uid)
    if preference is not None:
        reason = preference.decide(alert.kind.value, via)
        if reason is not None:
            return reason, None, language
        language = preference.language or language
    if via == "email":
        if not person.email:
            return "no_email", None, language
        return None, Target("email", person.email, user_id=uid), language
    return None, Target("notify", str(uid), user_id=uid), language


__all__ = ["Preferences", "Routed", "actor", "people_needed", "role_members", "route"]
