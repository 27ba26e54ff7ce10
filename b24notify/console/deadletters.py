"""The dead-letter page's rows and filters, over ``DeadLetters`` (the same list the CLI shows).

A filtered replay is asked for twice: the first POST answers with the count it will replay and a
fingerprint of exactly those ids; the second replays only if the filtered set still has that
fingerprint (otherwise it shows the new count), so the count a person confirmed is the count
replayed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from b24notify.deadletter import DeadDelivery, DeadLetters

SCAN_LIMIT = 10_000  # dead deliveries read for a page or a filtered replay
SHOWN = 200  # rows on the page


@dataclass(frozen=True)
class DeadFilter:
    portal: str = ""
    channel: str = ""
    reason: str = ""  # a substring, any case

    @classmethod
    def of(cls, get: Callable[[str], str]) -> DeadFilter:
        return cls(get("portal").strip()[:200], get("channel").strip()[:20], get("reason").strip()[:200])

    def query(self) -> dict[str, str]:
        return {name: value for name, value in (("portal", self.portal), ("channel", self.channel),
                                               ("reason", self.reason)) if value}


@dataclass(frozen=True)
class DeadRow:
    id: str
    portal: str | None
    task: int | None
    channel: str
    recipient: str  # the target key: chat:chat42, email:u5 (a person by id), apprise:<fingerprint>
    dead_at: datetime
    attempts: int
    reason: str

    def matches(self, selected: DeadFilter) -> bool:
        return ((not selected.portal or self.portal == selected.portal)
                and (not selected.channel or self.channel == selected.channel)
                and (not selected.reason or selected.reason.casefold() in self.reason.casefold()))


def row_of(entry: DeadDelivery, owner: Callable[[str], str | None]) -> DeadRow:
    """``portal:task:change…|channel:address``: its portal (the longest served one it starts with),
    task and recipient."""
    portal = owner(entry.id)
    task = None
    if portal is not None:
        head = entry.id[len(portal) + 1:].split(":", 1)[0]
        task = int(head) if head.isdigit() else None
    recipient = entry.id.rpartition("|")[2]
    return DeadRow(entry.id, portal, task, entry.channel, recipient, entry.dead_at, entry.attempts, entry.reason)


def select(dead: DeadLetters, owner: Callable[[str], str | None], selected: DeadFilter) -> tuple[list[DeadRow], bool]:
    """The rows that match, oldest death first, and whether the list was longer than SCAN_LIMIT."""
    entries = dead.entries(SCAN_LIMIT + 1)
    rows = [row for row in (row_of(e, owner) for e in entries[:SCAN_LIMIT]) if row.matches(selected)]
    return rows, len(entries) > SCAN_LIMIT


def fingerprint(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:24]
