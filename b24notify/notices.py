"""A Notice: what one delivery sends. The alerts one sync of one task produced for one recipient on
one channel (routing/recipients.py decides who), in the recipient's language.

Exactly-once is per (change, recipient, channel): a change is committed by exactly one sync (the
state moves forward atomically with the outbox), so it is in exactly one notice per recipient and
channel, and the notice's key names its changes and its recipient: a re-run of the same sync makes
the same key, which the outbox refuses to queue twice (lua/commit_sync.lua).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from b24notify.alerts import Alert

ChannelName = Literal["chat", "notify", "email", "apprise"]
CHANNEL_NAMES: tuple[ChannelName, ...] = ("chat", "notify", "email", "apprise")
LANGUAGES = ("en", "ru")


@dataclass(frozen=True)
class Target:
    """Where a notice goes.

    * ``chat``: ``im.message.add`` to a DIALOG_ID (``chat42``, ``sg7``, a user id);
    * ``notify``: ``im.notify.system.add`` to the person ``user_id`` (a personal notification);
    * ``email``: SMTP to ``address`` (a person's, from ``user.get``, or a fixed one);
    * ``apprise``: an Apprise URL; ``address`` is only the URL's fingerprint (:func:`apprise_id`):
      a URL holds credentials and must not reach Redis or a log, so the channel looks it up in the
      configuration by that fingerprint.

    ``user_id`` is the person (0 for a fixed target)."""

    channel: ChannelName
    address: str
    user_id: int = 0

    @property
    def key(self) -> str:
        """The recipient in delivery ids and logs: a person by id (never their address), a fixed
        target by its address (an Apprise URL by its fingerprint)."""
        if self.user_id:
            return f"{self.channel}:u{self.user_id}"
        return f"{self.channel}:{self.address}"

    def to_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "address": self.address, "user_id": self.user_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Target:
        channel = data["channel"]
        if channel not in CHANNEL_NAMES:
            raise ValueError(f"unknown channel {channel!r}")
        return cls(channel=channel, address=str(data["address"]), user_id=int(data.get("user_id") or 0))


def apprise_id(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Notice:
    alerts: tuple[Alert, ...]  # one task, one sync, in the order of the diff; at least one
    target: Target
    language: str = "en"

    def __post_init__(self) -> None:
        if not self.alerts:
            raise ValueError("a notice needs at least one alert")
        first = self.alerts[0]
        if any(a.portal != first.portal or a.task.id != first.task.id for a in self.alerts):
            raise ValueError("a notice holds the alerts of one task")

    @property
    def first(self) -> Alert:
        return self.alerts[0]

    @property
    def portal(self) -> str:
        return self.first.portal

    @property
    def task_id(self) -> int:
        return self.first.task.id

    @property
    def changes_key(self) -> str:
        """The changes it tells, whoever it is for: ``portal:task:change`` for one change (what
        an alert's key has always been), plus a count and a fingerprint of the rest for more."""
        keys = sorted(a.change_key for a in self.alerts)
        base = f"{self.portal}:{self.task_id}:{keys[0]}"
        if len(keys) == 1:
            return base
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
        return f"{base}+{len(keys) - 1}:{digest}"

    @property
    def key(self) -> str:
        """Unique per (changes, recipient, channel): the delivery id, the personal notification's
        TAG and the e-mail's Message-ID are made from it."""
        return f"{self.changes_key}|{self.target.key}"

    def to_json(self) -> str:
        return json.dumps({"alerts": [json.loads(a.to_json()) for a in self.alerts],
                           "target": self.target.to_dict(), "language": self.language}, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Notice:
        data = json.loads(raw)
        alerts = tuple(Alert.from_json(json.dumps(a)) for a in data["alerts"])
        return cls(alerts=alerts, target=Target.from_dict(data["target"]), language=str(data.get("language") or "en"))


def single(alert: Alert, target: Target, language: str = "en") -> Notice:
    return Notice((alert,), target, language)


def kinds_of(notice: Notice) -> Sequence[str]:
    return [a.kind.value for a in notice.alerts]
