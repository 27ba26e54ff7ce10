"""The trace page's and the alerts page's rows, from ``TraceEntry`` (b24notify/trace.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from redis import Redis

from b24notify.i18n import N_, translations
from b24notify.keys import Keys
from b24notify.task_info import TaskInfo
from b24notify.trace import TraceEntry

STEP_LABELS = {
    "event": N_("Event received"),
    "scheduled": N_("Scheduled"),
    "sync": N_("Sync"),
    "delivery": N_("Delivery"),
    "replay": N_("Replayed"),
}
# The fields a step records (trace.py), in the order shown; others follow under their own names.
FIELD_LABELS = {
    "event": N_("Event"),
    "coalesced": N_("Coalesced with a run already due"),
    "trigger": N_("Trigger"),
    "requests": N_("REST requests"),
    "job": N_("Tasks in the job"),
    "outcome": N_("Outcome"),
    "new": N_("New results"),
    "closed": N_("Closed results"),
    "edited": N_("Edited results"),
    "removed": N_("Removed results"),
    "baseline": N_("Baseline (not told)"),
    "queued": N_("Deliveries queued"),
    "detail": N_("Detail"),
    "delivery": N_("Delivery"),
    "recipient": N_("Recipient"),
    "channel": N_("Channel"),
    "attempt": N_("Attempt"),
    "error": N_("Error"),
    "message_id": N_("Message id"),
    "results": N_("Results"),
    "by": N_("By"),
}


@dataclass(frozen=True)
class Step:
    kind: str
    at: datetime
    label: str  # translated
    details: list[tuple[str, str]] = field(default_factory=list)  # (translated label, value)


@dataclass(frozen=True)
class Group:
    portal: str
    task: int
    task_url: str
    steps: list[Step]


YES_NO_FIELDS = ("coalesced",)  # "1" / "0"
# The values of ``outcome`` (a sync's status, workers/sync.py; a delivery's, workers/deliver.py) and
# of ``trigger``, in words; a value not listed is shown as it is.
VALUE_LABELS = {
    "outcome": {
        "sent": N_("sent"),
        "retry": N_("will retry"),
        "deferred": N_("deferred"),
        "dead": N_("failed for good"),
        "skipped": N_("skipped"),
        "synced": N_("synced"),
        "dropped": N_("dropped: the task is gone"),
        "failed": N_("failed"),
        "parked": N_("parked"),
        "halted": N_("portal paused"),
        "rejected": N_("rejected"),
        "stale": N_("stale: another run took over"),
    },
    "trigger": {
        "event": N_("event"),
        "poll": N_("reconciliation poll"),
        "sweep": N_("sweep"),
        "manual": N_("manual"),
    },
}


def value_label(name: str, value: str, language: str) -> str:
    label = VALUE_LABELS.get(name, {}).get(value)
    return translations(language).gettext(label) if label else value


def step_of(entry: TraceEntry, language: str) -> Step:
    t = translations(language)

    def shown(name: str, value: str) -> str:
        if name in YES_NO_FIELDS:
            return t.gettext("yes") if value == "1" else t.gettext("no")
        return value_label(name, value, language)

    known = [(t.gettext(label), shown(name, entry.fields[name])) for name, label in FIELD_LABELS.items()
             if entry.fields.get(name, "") != ""]
    other = [(name, value) for name, value in sorted(entry.fields.items())
             if name not in FIELD_LABELS and value != ""]
    label = STEP_LABELS.get(entry.kind)
    return Step(entry.kind, entry.at, t.gettext(label) if label else entry.kind, known + other)


def task_url(redis: Redis, keys: Keys, portal: str, portal_url: str, task_id: int, user_id: int = 1) -> str:
    """The task's page on the portal: its own path when its details are cached (a group task
    lives under the group), else the personal form, which any user id opens for a reader who
    may see the task (docs/protocol.md §9 "Link to a task in the portal UI")."""
    cached = redis.get(keys.task_cache(portal, task_id))
    info = None
    if cached is not None:
        try:
            info = TaskInfo.from_json(cached)
        except (ValueError, TypeError, KeyError):
            info = None
    if info is None or info.id != task_id:
        info = TaskInfo(id=task_id, title="", responsible_id=user_id, group_id=0, status=0, created_by=0)
    return f"{portal_url.rstrip('/')}{info.path()}"


@dataclass(frozen=True)
class AlertRow:
    at: datetime
    portal: str
    task: int
    recipient: str
    channel: str
    outcome: str  # as recorded (sent, retry, dead …)
    outcome_label: str  # in words, translated
    attempt: str
    error: str


def alert_row(entry: TraceEntry, language: str) -> AlertRow:
    get = entry.fields.get
    outcome = get("outcome", "")
    return AlertRow(entry.at, entry.portal, entry.task_id, get("recipient", ""), get("channel", ""),
                    outcome, value_label("outcome", outcome, language), get("attempt", ""), get("error", ""))
