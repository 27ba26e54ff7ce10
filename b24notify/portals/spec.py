"""One portal as the rest of the code sees it, however it was configured.

Webhook mode gets its portals from ``B24_WEBHOOK_URL`` (one) and/or a TOML file
(``B24NOTIFY_CONFIG``, several); app mode from installs (``portals/registry.py``). All three end
as a :class:`PortalSpec`, built in this file only, so sync, delivery, reconciliation and the web
never ask which mode they are in.

A new per-portal setting touches this file: a field of :class:`PortalSpec`, the same name in
:class:`PortalEntry` (its TOML key, validated there) and one line in :func:`_options` (what it is
when the entry leaves it out: the global setting, if it has one in ``settings/``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from b24notify.i18n import N_
from b24notify.routing.rules import Route, apprise_urls, make_route, shortcut_routes
from b24notify.settings import (
    DIALOG_ID,
    EMAIL_ADDRESS,
    LANGUAGES,
    ROLES,
    ConfigError,
    Settings,
    Webhook,
    parse_webhook_url,
)
from b24notify.settings.rates import RateLimit

# What to do about a portal whose calls stopped for good (the halted key), by how it is connected:
# the worker's log line (workers/sync.py, event=portal.halted) and the console say the same.
HALT_ACTIONS = {
    "webhook": N_("check B24_WEBHOOK_URL, its scopes (task, im, user) and the portal plan"),
    "app": N_("reinstall the app on the portal (or fix B24_CLIENT_ID / B24_CLIENT_SECRET)"),
}


@dataclass(frozen=True)
class PortalSpec:
    key: str  # host[:port]: the portal's name in Redis keys, logs and alert keys
    portal_url: str  # https://host[:port], for links into the portal
    application_token: str = field(repr=False)  # what its events must carry
    member_id: str | None
    rate_limit: str
    notify_chat: str | None
    notify_email: tuple[str, ...]
    webhook: Webhook | None = field(default=None, repr=False)  # None: an app install (OAuth)
    routes: tuple[Route, ...] = ()  # who gets alerts (routing/); NOTIFY_* are routes too
    language: str = "en"  # of alerts where the reader's own preference does not say
    default_via: tuple[str, ...] = ("chat",)  # how a route reaches people when it does not say

    @property
    def channel_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for route in self.routes:
            names += [t.channel for t in route.targets] + (["people"] if route.roles else [])
        return tuple(dict.fromkeys(names))

    @property
    def apprise_urls(self) -> dict[str, str]:
        return apprise_urls(self.routes)


def _language(value: str | None) -> str | None:
    if value is None:
        return None
    language = value.strip().lower()
    if language not in LANGUAGES:
        raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
    return language


class RouteEntry(BaseModel):
    """One ``[[routes]]`` (or ``[[portals.routes]]``) table."""

    model_config = ConfigDict(extra="forbid")

    to: list[str]
    kinds: list[str] | None = None
    groups: list[int] | None = None
    via: list[str] | None = None

    @model_validator(mode="after")
    def _valid(self) -> RouteEntry:
        self.route()
        return self

    def route(self) -> Route:
        return make_route(self.to, kinds=self.kinds, groups=self.groups, via=self.via)


class PortalEntry(BaseModel):
    """One ``[[portals]]`` table of the TOML file."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: SecretStr
    application_token: SecretStr
    member_id: str | None = None
    rate_limit: str | None = None
    notify_chat: str | None = None
    notify_email: list[str] | None = None
    notify_people: list[str] | None = None
    language: str | None = None
    routes: list[RouteEntry] | None = None  # replaces the file's top-level routes for this portal

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr) -> SecretStr:
        parse_webhook_url(value.get_secret_value())
        return value

    @field_validator("application_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("is empty")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            RateLimit.parse(value)
        return value

    @field_validator("notify_chat")
    @classmethod
    def _dialog(cls, value: str | None) -> str | None:
        if value is not None and not DIALOG_ID.match(value):
            raise ValueError("must be a DIALOG_ID: chatN, sgN or a user id")
        return value

    @field_validator("notify_email")
    @classmethod
    def _emails(cls, value: list[str] | None) -> list[str] | None:
        for address in value or []:
            if not EMAIL_ADDRESS.match(address):
                raise ValueError("holds an address that is not user@domain")
        return value

    @field_validator("notify_people")
    @classmethod
    def _people(cls, value: list[str] | None) -> list[str] | None:
        for role in value or []:
            if role not in ROLES:
                raise ValueError(f"{role[:30]!r} is not one of {', '.join(ROLES)}")
        return value

    @field_validator("language")
    @classmethod
    def _lang(cls, value: str | None) -> str | None:
        return _language(value)


class PortalFile(BaseModel):
    """``B24NOTIFY_CONFIG``: top-level defaults (``language``, ``[[routes]]``) and, optionally,
    ``[[portals]]``. A file without portals applies to the portals the environment gives
    (``B24_WEBHOOK_URL``, app installs)."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = None
    routes: list[RouteEntry] | None = None
    portals: list[PortalEntry] = Field(default_factory=list)

    @field_validator("language")
    @classmethod
    def _lang(cls, value: str | None) -> str | None:
        return _language(value)


def webhook_portals(settings: Settings) -> list[PortalSpec]:
    """The configured webhook-mode portals: ``B24_WEBHOOK_URL`` and the TOML file's, in that order.
    Raises ConfigError naming the file, the entry and the field (never a value)."""
    specs: list[PortalSpec] = []
    defaults = portal_file(settings)
    if settings.b24_webhook_url is not None:
        token = settings.b24_application_token.get_secret_value() if settings.b24_application_token else ""
        specs.append(_webhook_portal(parse_webhook_url(settings.b24_webhook_url.get_secret_value()), token,
                                     settings.b24_member_id, _options(settings, defaults, None)))
    for entry in defaults.portals:
        specs.append(_webhook_portal(parse_webhook_url(entry.webhook_url.get_secret_value()),
                                     entry.application_token.get_secret_value(), entry.member_id,
                                     _options(settings, defaults, entry)))
    seen: set[str] = set()
    for spec in specs:
        if spec.key in seen:
            raise ConfigError(f"B24NOTIFY_CONFIG: portal {spec.key} is configured twice")
        seen.add(spec.key)
    return specs


def portal_file(settings: Settings) -> PortalFile:
    """The TOML file's contents (an empty one when ``B24NOTIFY_CONFIG`` is not set)."""
    return load_portal_file(settings.b24notify_config) if settings.b24notify_config is not None else PortalFile()


def load_portal_file(path: Path) -> PortalFile:
    try:
        text = Path(path).read_text(encoding="utf-8")
        raw: dict[str, Any] = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"B24NOTIFY_CONFIG: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"B24NOTIFY_CONFIG: {path} is not valid TOML: {exc}") from None
    try:
        return PortalFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
        message = str(first["msg"]).removeprefix("Value error, ")
        line = _line_of(text, loc)
        at = f" line {line}" if line else ""
        raise ConfigError(f"B24NOTIFY_CONFIG: {path}{at}: {where}: {message}") from None


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The line of the ``[[routes]]`` / ``[[portals]]`` / ``[[portals.routes]]`` table an error is
    in (tables written inline have no line of their own: None)."""
    headers = [(number, line.strip().strip("[]").replace(" ", ""))
               for number, line in enumerate(text.splitlines(), start=1) if line.strip().startswith("[[")]

    def nth(name: str, index: int, within: list[tuple[int, str]]) -> tuple[int, int] | None:
        seen = -1
        for position, (number, header) in enumerate(within):
            if header == name:
                seen += 1
                if seen == index:
                    return position, number
        return None

    if len(loc) >= 2 and loc[0] == "routes" and isinstance(loc[1], int):
        found = nth("routes", loc[1], headers)
        return found[1] if found else None
    if len(loc) >= 2 and loc[0] == "portals" and isinstance(loc[1], int):
        found = nth("portals", loc[1], headers)
        if found is None:
            return None
        position, number = found
        if len(loc) >= 4 and loc[2] == "routes" and isinstance(loc[3], int):
            after = headers[position + 1:]
            until = next((i for i, (_, header) in enumerate(after) if header == "portals"), len(after))
            inner = nth("portals.routes", loc[3], after[:until])
            return inner[1] if inner else number
        return number
    return None


def app_portal(settings: Settings, *, domain: str, client_endpoint: str, application_token: str,
               member_id: str, user_id: int, defaults: PortalFile | None = None) -> PortalSpec:
    """An app install as a portal. With no chat or people route configured, chat goes to who
    installed the app."""
    parts = urlsplit(client_endpoint)
    installer_chat = str(user_id) if user_id else None
    return PortalSpec(key=domain, portal_url=f"{parts.scheme}://{parts.netloc}",
                      application_token=application_token, member_id=member_id,
                      **_options(settings, defaults or PortalFile(), None, default_chat=installer_chat))


def _options(settings: Settings, defaults: PortalFile, entry: PortalEntry | None,
             default_chat: str | None = None) -> dict[str, Any]:
    """The per-portal settings: the TOML entry's where it sets them, else the file's top level,
    else the environment's."""
    def own(name: str) -> Any:
        return getattr(entry, name) if entry is not None else None

    chat = own("notify_chat")
    chat = chat if chat is not None else settings.notify_chat
    email = own("notify_email")
    emails = tuple(email if email is not None else settings.notify_email)
    people = own("notify_people")
    entries = own("routes")
    entries = entries if entries is not None else (defaults.routes or [])
    routes = [entry_.route() for entry_ in entries]
    routes += shortcut_routes(chat=chat, emails=emails,
                              people=people if people is not None else settings.notify_people)
    # An app install's chat goes to who installed it unless something else is told in chat
    # (NOTIFY_CHAT, a chat route, people): README "As a Bitrix24 application".
    if default_chat and not any(route.roles or any(t.channel == "chat" for t in route.targets) for route in routes):
        chat = default_chat
        routes += shortcut_routes(chat=chat, emails=(), people=())
    return {
        "rate_limit": own("rate_limit") or settings.b24_rate_limit,
        "notify_chat": chat,
        "notify_email": emails,
        "routes": tuple(routes),
        "language": own("language") or defaults.language or settings.notify_language,
        "default_via": ("chat", "email") if settings.email_configured else ("chat",),
    }


def _webhook_portal(webhook: Webhook, token: str, member_id: str | None, options: dict[str, Any]) -> PortalSpec:
    return PortalSpec(key=webhook.netloc, portal_url=webhook.portal_url, application_token=token,
                      member_id=member_id, webhook=webhook, **options)


def require_channels(settings: Settings) -> None:
    """What a worker needs on top of ``Settings.require_portal``: every webhook portal has at least
    one route, and e-mail is fully configured when any route sends it."""
    settings.require_portal()
    defaults = portal_file(settings)
    if settings.b24notify_config is not None and not defaults.portals and settings.b24_webhook_url is None \
            and not settings.app_mode:
        raise ConfigError("B24_WEBHOOK_URL: is not set, and B24NOTIFY_CONFIG has no [[portals]]: "
                          "give one of them (or B24_CLIENT_ID for app mode)")
    routes: list[Route] = []
    if settings.app_mode:
        routes = list(_options(settings, defaults, None)["routes"])
    else:
        portals = webhook_portals(settings)
        for portal in portals:
            if not portal.routes:
                raise ConfigError("NOTIFY_CHAT / NOTIFY_EMAIL / NOTIFY_PEOPLE: set at least one of them, "
                                  "or [[routes]] in B24NOTIFY_CONFIG"
                                  + (f" (portal {portal.key})" if len(portals) > 1 else ""))
            routes += portal.routes
    if any(route.sends_email for route in routes):
        what = "NOTIFY_EMAIL or an e-mail route"
        if settings.smtp_url is None:
            raise ConfigError(f"SMTP_URL: is required when {what} is set")
        if settings.email_from is None:
            raise ConfigError(f"EMAIL_FROM: is required when {what} is set")
