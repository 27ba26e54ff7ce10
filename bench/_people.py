"""People routing for bench/e2e.py: who the bench's tasks name, and what the simulator's call log
and notification history say about the personal notifications (``im.notify.system.add``) and the
requests the fleet spent on them.

Each task of a ``people`` run names three people to tell (``NOTIFY_PEOPLE=creator,auditors``): its
creator and two auditors. The result's author (the responsible, who comments it) is none of them,
so every result is three alerts: one notification to each of them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl

NOTIFY_PEOPLE = "creator,auditors"
CREATOR = 504
AUDITORS = (505, 1)
RECIPIENTS = frozenset({CREATOR, *AUDITORS})
AUTHOR = 503  # the responsible, who posts the results: never told of their own result
NOTIFY = "im.notify.system.add"
USER_GET = "user.get"
MARK = re.compile(r"res-(\d+)-end")


def _commands(call: dict[str, Any]) -> Iterator[tuple[str, dict[str, str]]]:
    """(method, parameters) of each call one answered request made, a batch's succeeded sub-calls
    opened (each command is ``method?query``)."""
    if call["http_status"] != 200:
        return
    params = call["params"]
    if call["method"] != "batch":
        if not call["error"] and isinstance(params, dict):
            yield call["method"], {str(k): str(v) for k, v in params.items()}
        return
    failed = {sub["key"] for sub in call.get("sub_calls", []) if sub["error"]}
    commands = params.get("cmd")
    for key, command in commands.items() if isinstance(commands, dict) else ():
        if key not in failed:
            method, _, query = str(command).partition("?")
            yield method, dict(parse_qsl(query, keep_blank_values=True))


def notify_posts(calls: Iterable[dict[str, Any]]) -> Iterator[tuple[int, int, float]]:
    """(task id, user id, when the portal answered) for each personal notification that names a
    bench result, alone or inside a batch (the batch request's answer time)."""
    for call in calls:
        for method, params in _commands(call):
            if method != NOTIFY:
                continue
            match = MARK.search(params.get("MESSAGE", ""))
            if match and params.get("USER_ID", "").isdigit():
                yield int(match[1]), int(params["USER_ID"]), call["at"]


def notified(history: Iterable[dict[str, Any]]) -> Counter[tuple[int, int]]:
    """Notifications per (task, recipient), as the simulator's notification history shows them
    (a repeat with the same TAG counts: it is a second notification added)."""
    return Counter((int(m[1]), int(n["user_id"])) for n in history if (m := MARK.search(str(n["message"]))))


def sub_calls(call: dict[str, Any]) -> list[str]:
    """The methods one request carried: a batch's sub-calls, else the request's own method."""
    if call["method"] != "batch":
        return [str(call["method"])]
    if call.get("sub_calls"):
        return [str(sub["method"]) for sub in call["sub_calls"]]
    commands = call["params"].get("cmd") if isinstance(call["params"], dict) else None  # refused whole
    return [str(c).partition("?")[0] for c in commands.values()] if isinstance(commands, dict) else []


def carried(call: dict[str, Any]) -> str:
    """What a request was for, by the methods it carried: ``batch[tasks.task.get+tasks.task.result.list]``."""
    if call["method"] != "batch":
        return str(call["method"])
    return "batch[" + "+".join(sorted(set(sub_calls(call)))) + "]"
