"""A person of the portal as alerts need them: name, e-mail, whether they are active (``user.get``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Person:
    id: int
    name: str  # "Anna Smith"; "user 503" when the portal gives none
    email: str = ""  # "" when the portal gives none (or our scope cannot see it)
    active: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Person | None:
        """None for anything we did not write (an older cache entry, a damaged one): read again."""
        try:
            data = json.loads(raw)
            return cls(id=int(data["id"]), name=str(data["name"]), email=str(data.get("email") or ""),
                       active=bool(data.get("active", True)))
        except (ValueError, TypeError, KeyError):
            return None


def parse_user(user_id: int, rows: Any) -> Person:
    """One ``user.get {ID}`` answer (a list of user rows). A user the portal does not return
    (fired and filtered out, deleted, hidden from us) gets a stable placeholder name and counts as
    inactive: nobody can be reached there."""
    row: Mapping[str, Any] = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], Mapping) else {}
    name = " ".join(p for p in (str(row.get("NAME") or "").strip(), str(row.get("LAST_NAME") or "").strip()) if p)
    email = str(row.get("EMAIL") or "").strip()
    active = row.get("ACTIVE", True)
    if isinstance(active, str):
        active = active.strip().upper() not in ("N", "0", "FALSE", "")
    return Person(id=user_id, name=name or f"user {user_id}", email=email if "@" in email else "",
                  active=bool(active) if row else False)
