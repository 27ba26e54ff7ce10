"""Per-user, per-portal preferences: mute, the kinds a person is told about, the channels they
accept for personal alerts, their language. Set by an operator (``b24notify prefs set``), read by
every sync (one HMGET per sync and portal), so a change applies from the next sync.

Stored in ``keys.prefs(portal)``: a hash, user id -> :meth:`Prefs.to_json`. A user without a field
has the defaults; a field that is all defaults is removed rather than stored.

Parsing, validation and merging are pure (:class:`Prefs`, :class:`PrefsUpdate`); the store is a
thin layer over Redis. A stored value that cannot be read (hand-edited, written by a newer
version) never breaks a sync: what cannot be read falls back to its default, and the store logs it
once (per store, so keep one store per worker context).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Final, Literal

from redis import Redis
from redis.client import Pipeline

from b24notify.diff import ChangeKind
from b24notify.keys import Keys
from b24notify.notices import LANGUAGES

log = logging.getLogger(__name__)

KINDS: Final[tuple[str, ...]] = tuple(kind.value for kind in ChangeKind)  # new, closed, edited, removed
VIA: Final[tuple[str, ...]] = ("chat", "email")  # as routes name them: "chat" = personal notification
ALL: Final = "all"  # --kinds all / --via all: back to every kind / whatever the route says
DEFAULT: Final = "default"  # --language default: back to the portal's language

# A notice's channel (notices.ChannelName) as ``via`` names it: the personal notification in
# Bitrix24 (``notify``, im.notify.system.add) is "chat" in routes and preferences, as is a chat
# message to the person. Other channels (``apprise``) are not a person's: with ``via`` set they
# are not on the person's list.
VIA_OF_CHANNEL: Final[Mapping[str, str]] = {"notify": "chat", "chat": "chat", "email": "email"}

SkipReason = Literal["muted", "kind", "channel"]
WARNED_MAX = 1024  # bad stored values remembered as already logged, per store


@dataclass(frozen=True)
class Prefs:
    muted: bool = False
    kinds: frozenset[str] | None = None  # the kinds this person is told about; None = all
    via: frozenset[str] | None = None  # channels accepted for personal alerts; None = the route's
    language: str | None = None  # "en" | "ru"; None = the portal's language

    def __post_init__(self) -> None:
        _choices("kinds", self.kinds, KINDS)
        _choices("via", self.via, VIA)
        if self.language is not None and self.language not in LANGUAGES:
            raise ValueError(f"language: {self.language!r} is not one of {', '.join(LANGUAGES)}")

    @property
    def is_default(self) -> bool:
        return self == Prefs()

    def decide(self, kind: str, channel: str) -> SkipReason | None:
        """None when this person gets an alert of ``kind`` on ``channel`` (a notice's channel:
        ``notify``, ``email``, ``chat``, or the ``via`` names), else why not."""
        if self.muted:
            return "muted"
        if self.kinds is not None and str(kind) not in self.kinds:
            return "kind"
        if self.via is not None and VIA_OF_CHANNEL.get(str(channel)) not in self.via:
            return "channel"
        return None

    def to_json(self) -> str:
        return json.dumps({
            "muted": self.muted,
            "kinds": _ordered(self.kinds, KINDS),
            "via": _ordered(self.via, VIA),
            "language": self.language,
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> Prefs:
        """Never raises: what cannot be read is the default (:func:`read_prefs` says what)."""
        return read_prefs(raw)[0]


def read_prefs(raw: str | bytes | None) -> tuple[Prefs, tuple[str, ...]]:
    """A stored value as Prefs, field by field: a field that cannot be read takes its default, the
    others are kept (a muted person stays muted when their language is unreadable). Unknown keys
    are ignored. Returns the problems found, for one log line."""
    if raw is None:
        return Prefs(), ()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return Prefs(), ("not JSON",)
    if not isinstance(data, dict):
        return Prefs(), (f"not a JSON object but {type(data).__name__}",)
    problems: list[str] = []
    muted = data.get("muted", False)
    if not isinstance(muted, bool):
        problems.append(f"muted: {_shown(muted)} is not true/false")
        muted = False
    kinds = _stored_choices("kinds", data.get("kinds"), KINDS, problems)
    via = _stored_choices("via", data.get("via"), VIA, problems)
    language = data.get("language")
    if language is not None and language not in LANGUAGES:
        problems.append(f"language: {_shown(language)} is not one of {', '.join(LANGUAGES)}")
        language = None
    return Prefs(muted=muted, kinds=kinds, via=via, language=language), tuple(problems)


class _Keep(Enum):
    KEEP = "keep"


KEEP: Final = _Keep.KEEP


@dataclass(frozen=True)
class PrefsUpdate:
    """A validated change: the fields to set; the others (``KEEP``) stay as they are."""

    muted: bool | _Keep = KEEP
    kinds: frozenset[str] | _Keep | None = KEEP
    via: frozenset[str] | _Keep | None = KEEP
    language: str | _Keep | None = KEEP

    @classmethod
    def parse(cls, *, muted: bool | None = None, kinds: str | Iterable[str] | None = None,
              via: str | Iterable[str] | None = None, language: str | None = None) -> PrefsUpdate:
        """None leaves a field as it is. ``kinds``/``via``: ``"new,closed"``, an iterable of
        names, or ``"all"`` (every kind / whatever the route says); ``language``: ``en``, ``ru``
        or ``"default"`` (the portal's). Raises ValueError naming the field and what is wrong."""
        if muted is not None and not isinstance(muted, bool):
            raise ValueError(f"muted: must be true or false, not {_shown(muted)}")
        return cls(
            muted=KEEP if muted is None else muted,
            kinds=KEEP if kinds is None else parse_choices("kinds", kinds, KINDS),
            via=KEEP if via is None else parse_choices("via", via, VIA),
            language=KEEP if language is None else parse_language(language),
        )

    @property
    def empty(self) -> bool:
        return all(value is KEEP for value in (self.muted, self.kinds, self.via, self.language))

    def apply(self, prefs: Prefs) -> Prefs:
        changes: dict[str, Any] = {name: value for name, value in (
            ("muted", self.muted), ("kinds", self.kinds), ("via", self.via), ("language", self.language),
        ) if value is not KEEP}
        return replace(prefs, **changes)


def parse_choices(name: str, value: str | Iterable[str], known: tuple[str, ...]) -> frozenset[str] | None:
    """``"a,b"`` or ``["a", "b"]`` -> frozenset; ``"all"`` -> None. Names are case-insensitive."""
    items = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"{name}: give names, not {_shown(value)}")
    names = [item.strip().lower() for item in items if item.strip()]
    hint = f"one or more of {', '.join(known)} (comma-separated), or {ALL}"
    if not names:
        raise ValueError(f"{name}: empty; give {hint}")
    if ALL in names:
        if len(names) > 1:
            raise ValueError(f"{name}: {ALL} cannot be combined with other names")
        return None
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{name}: {_shown(unknown[0])} is not known; give {hint}")
    return frozenset(names)


def parse_language(value: str) -> str | None:
    """``en`` / ``ru`` -> itself; ``default`` -> None (the portal's language)."""
    if not isinstance(value, str):
        raise ValueError(f"language: give a name, not {_shown(value)}")
    name = value.strip().lower()
    if name == DEFAULT:
        return None
    if name not in LANGUAGES:
        raise ValueError(f"language: {_shown(value)} is not known; give {', '.join(LANGUAGES)} or {DEFAULT}")
    return name


def parse_user_id(value: str | int) -> int:
    """A Bitrix24 user id: a positive integer (``"7"`` or ``7``)."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isascii() or not text.isdigit() or int(text) <= 0:
        raise ValueError(f"user: {_shown(value)} is not a user id (a positive integer)")
    return int(text)


def table(prefs: Mapping[int, Prefs]) -> list[str]:
    """What ``prefs list`` prints: one row per user, in the words ``prefs set`` takes."""
    if not prefs:
        return ["(none)"]
    header = ("user", "muted", "kinds", "via", "language")
    rows = [header] + [(str(user), "yes" if p.muted else "no", _words(p.kinds, KINDS), _words(p.via, VIA),
                        p.language or DEFAULT) for user, p in sorted(prefs.items())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


class PrefsStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._warned: set[tuple[str, str, str]] = set()

    def get_many(self, portal: str, user_ids: Iterable[int]) -> dict[int, Prefs]:
        """Everyone's preferences in one HMGET; users without any get the defaults."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        raws = self.redis.hmget(self.keys.prefs(portal), [str(user) for user in ids])
        return {user: self._read(portal, str(user), raw) for user, raw in zip(ids, raws, strict=True)}

    def get(self, portal: str, user_id: int) -> Prefs:
        return self.get_many(portal, [user_id])[user_id]

    def all(self, portal: str) -> dict[int, Prefs]:
        found: dict[int, Prefs] = {}
        for field, raw in self.redis.hgetall(self.keys.prefs(portal)).items():
            user = _text(field)
            try:
                user_id = parse_user_id(user)
            except ValueError:
                self._warn(portal, user, raw, ("not a user id",))
                continue
            found[user_id] = self._read(portal, user, raw)
        return found

    def update(self, portal: str, user_id: int, *, muted: bool | None = None,
               kinds: str | Iterable[str] | None = None, via: str | Iterable[str] | None = None,
               language: str | None = None) -> Prefs:
        """Merge: only the fields given change (see :meth:`PrefsUpdate.parse` for the values).
        Validates everything before it writes (ValueError, nothing written); returns the stored
        preferences. Atomic against a concurrent update of the same person (WATCH)."""
        change = PrefsUpdate.parse(muted=muted, kinds=kinds, via=via, language=language)
        return self.apply(portal, user_id, change)

    def apply(self, portal: str, user_id: int, change: PrefsUpdate) -> Prefs:
        """:meth:`update` with the change already parsed."""
        user = str(parse_user_id(user_id))
        key = self.keys.prefs(portal)
        stored: list[Prefs] = []

        def write(pipe: Pipeline) -> None:  # run again by redis-py if the hash changes meanwhile (WATCH)
            merged = change.apply(self._read(portal, user, pipe.hget(key, user)))
            pipe.multi()
            if merged.is_default:
                pipe.hdel(key, user)
            else:
                pipe.hset(key, user, merged.to_json())
            stored[:] = [merged]

        self.redis.transaction(write, key)
        return stored[0]

    def clear(self, portal: str, user_id: int) -> bool:
        """Back to the defaults. True when the person had preferences."""
        return bool(self.redis.hdel(self.keys.prefs(portal), str(parse_user_id(user_id))))

    def _read(self, portal: str, user: str, raw: bytes | str | None) -> Prefs:
        prefs, problems = read_prefs(raw)
        if problems:
            self._warn(portal, user, raw, problems)
        return prefs

    def _warn(self, portal: str, user: str, raw: bytes | str | None, problems: tuple[str, ...]) -> None:
        """One line per bad stored value, not one per sync that reads it."""
        seen = (portal, user, hashlib.sha256(_text(raw or "").encode()).hexdigest())
        if seen in self._warned:
            return
        if len(self._warned) >= WARNED_MAX:
            self._warned.clear()
        self._warned.add(seen)
        shown = user if user.isascii() and user.isdigit() else _shown(user, 40)
        log.warning("event=prefs.unreadable portal=%s user=%s problem=%r fallback=defaults",
                    portal, shown, "; ".join(problems))


def _choices(name: str, value: frozenset[str] | None, known: tuple[str, ...]) -> None:
    if value is None:
        return
    if not isinstance(value, frozenset) or not value:
        raise ValueError(f"{name}: must be a non-empty frozenset, or None for {ALL}")
    unknown = sorted(v for v in value if v not in known)
    if unknown:
        raise ValueError(f"{name}: {unknown[0]!r} is not one of {', '.join(known)}")


def _stored_choices(name: str, value: object, known: tuple[str, ...], problems: list[str]) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.append(f"{name}: {_shown(value)} is not a list of names")
        return None
    good = frozenset(item for item in value if item in known)
    bad = [item for item in value if item not in known]
    if bad:
        problems.append(f"{name}: {_shown(bad[0])} is not one of {', '.join(known)}")
    if not good:  # nothing readable left: every kind / the route's channels, never none
        if not bad:
            problems.append(f"{name}: empty")
        return None
    return good


def _ordered(value: frozenset[str] | None, known: tuple[str, ...]) -> list[str] | None:
    return None if value is None else [name for name in known if name in value]


def _words(value: frozenset[str] | None, known: tuple[str, ...]) -> str:
    return ALL if value is None else ",".join(name for name in known if name in value)


def _text(value: bytes | str) -> str:
    """Redis answers bytes, and a hand-written field or value need not be UTF-8."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _shown(value: object, limit: int = 60) -> str:
    """A value for a message: repr, cut short (a stored value may be anything, of any size)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
