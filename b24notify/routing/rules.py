"""Routes: the configuration of who gets alerts (README "Who gets alerts").

A route names recipients — roles (people of the task) and fixed targets — and may narrow the kinds
of change and the projects (``GROUP_ID``) it applies to. Every matching route adds its recipients;
routing.recipients collapses a person reached twice.

Fixed targets: ``chat:<DIALOG_ID>`` (``chat42``, ``sg7``, a user id), ``email:<address>`` and
``apprise:<URL>`` (any Apprise URL: ``tgram://…``, ``slack://…``, ``json://…``). An Apprise URL
carries credentials: it is kept here only, and everything else (the outbox, logs, errors) sees its
fingerprint (``notices.apprise_id``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from b24notify.notices import Target, apprise_id
from b24notify.settings import DIALOG_ID, EMAIL_ADDRESS, NOTIFIABLE_KINDS, ROLES

VIA = ("chat", "email")  # how a person is reached: a personal notification in Bitrix24, e-mail
VIA_CHANNEL = {"chat": "notify", "email": "email"}
_APPRISE_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+.-")


@dataclass(frozen=True)
class Route:
    roles: tuple[str, ...] = ()
    targets: tuple[Target, ...] = ()
    kinds: frozenset[str] | None = None  # None: NOTIFY_KINDS
    groups: frozenset[int] | None = None  # None: every task
    via: tuple[str, ...] | None = None  # for roles; None: chat, and e-mail where it is configured
    apprise_urls: Mapping[str, str] = field(default_factory=dict, repr=False)  # fingerprint -> URL

    def applies(self, kind: str, group_id: int, default_kinds: Iterable[str]) -> bool:
        kinds = self.kinds if self.kinds is not None else frozenset(default_kinds)
        return kind in kinds and (self.groups is None or group_id in self.groups)

    @property
    def sends_email(self) -> bool:
        return any(t.channel == "email" for t in self.targets) or bool(self.roles and "email" in (self.via or ()))


def parse_target(text: str) -> tuple[str | None, Target | None, str | None]:
    """One ``to`` entry: ``(role, None, None)`` for a role, ``(None, target, url)`` for a fixed
    target (``url``: the Apprise URL behind an ``apprise:`` one). Raises ValueError saying what is
    wrong, never echoing an Apprise URL."""
    value = text.strip()
    if value in ROLES:
        return value, None, None
    kind, sep, rest = value.partition(":")
    if not sep:
        raise ValueError(f"{value[:40]!r} is neither a role ({', '.join(ROLES)}) "
                         "nor a target (chat:DIALOG_ID, email:ADDRESS, apprise:URL)")
    if kind == "chat":
        if not DIALOG_ID.match(rest):
            raise ValueError(f"chat:{rest[:40]} is not a DIALOG_ID (chatNNN, sgNNN or a user id)")
        return None, Target("chat", rest), None
    if kind == "email":
        if not EMAIL_ADDRESS.match(rest):
            raise ValueError(f"email:{rest[:60]} is not an e-mail address")
        return None, Target("email", rest), None
    if kind == "apprise":
        scheme, sep, _ = rest.partition("://")
        if not sep or not scheme or set(scheme.lower()) - _APPRISE_SCHEME_CHARS:
            raise ValueError("an apprise: target must be apprise:SCHEME://… "
                             "(the URL is not shown: it may hold a token)")
        return None, Target("apprise", apprise_id(rest)), rest
    raise ValueError(f"{kind[:20]!r}: targets are chat:DIALOG_ID, email:ADDRESS or apprise:URL")


def make_route(to: Sequence[str], *, kinds: Sequence[str] | None = None, groups: Sequence[int] | None = None,
               via: Sequence[str] | None = None) -> Route:
    """A validated route. Raises ValueError naming the entry (``to[1]: …``)."""
    if not to:
        raise ValueError("to: needs at least one role or target")
    roles: list[str] = []
    targets: list[Target] = []
    urls: dict[str, str] = {}
    for index, entry in enumerate(to):
        try:
            role, target, url = parse_target(str(entry))
        except ValueError as exc:
            raise ValueError(f"to[{index}]: {exc}") from None
        if role is not None and role not in roles:
            roles.append(role)
        if target is not None and target not in targets:
            targets.append(target)
            if url is not None:
                urls[target.address] = url
    for index, kind in enumerate(kinds or ()):
        if kind not in NOTIFIABLE_KINDS:
            raise ValueError(f"kinds[{index}]: {kind!r} is not one of {', '.join(NOTIFIABLE_KINDS)}")
    for index, group in enumerate(groups or ()):
        if isinstance(group, bool) or not isinstance(group, int) or group < 0:
            raise ValueError(f"groups[{index}]: must be a project id (GROUP_ID, a number)")
    for index, channel in enumerate(via or ()):
        if channel not in VIA:
            raise ValueError(f"via[{index}]: {channel!r} is not one of {', '.join(VIA)}")
    if via is not None and not via:
        raise ValueError("via: name at least one of chat, email (or leave it out)")
    return Route(
        roles=tuple(roles), targets=tuple(targets),
        kinds=frozenset(kinds) if kinds is not None else None,
        groups=frozenset(groups) if groups is not None else None,
        via=tuple(dict.fromkeys(via)) if via is not None else None,
        apprise_urls=urls,
    )


def shortcut_routes(*, chat: str | None, emails: Sequence[str], people: Sequence[str]) -> list[Route]:
    """The routes NOTIFY_CHAT, NOTIFY_EMAIL and NOTIFY_PEOPLE stand for (for every task)."""
    routes = []
    if chat:
        routes.append(make_route([f"chat:{chat}"]))
    if emails:
        routes.append(make_route([f"email:{address}" for address in emails]))
    if people:
        routes.append(make_route(list(people)))
    return routes


def apprise_urls(routes: Iterable[Route]) -> dict[str, str]:
    urls: dict[str, str] = {}
    for route in routes:
        urls.update(route.apprise_urls)
    return urls
