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

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from b24notify.settings import DIALOG_ID, EMAIL_ADDRESS, ConfigError, Settings, Webhook, parse_webhook_url
from b24notify.settings.rates import RateLimit


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

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(name for name, on in (("chat", self.notify_chat), ("email", self.notify_email)) if on)


class PortalEntry(BaseModel):
    """One ``[[portals]]`` table of the TOML file."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: SecretStr
    application_token: SecretStr
    member_id: str | None = None
    rate_limit: str | None = None
    notify_chat: str | None = None
    notify_email: list[str] | None = None

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


class PortalFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    portals: list[PortalEntry] = Field(min_length=1)


def webhook_portals(settings: Settings) -> list[PortalSpec]:
    """The configured webhook-mode portals: ``B24_WEBHOOK_URL`` and the TOML file's, in that order.
    Raises ConfigError naming the file, the entry and the field (never a value)."""
    specs: list[PortalSpec] = []
    if settings.b24_webhook_url is not None:
        token = settings.b24_application_token.get_secret_value() if settings.b24_application_token else ""
        specs.append(_webhook_portal(parse_webhook_url(settings.b24_webhook_url.get_secret_value()), token,
                                     settings.b24_member_id, _options(settings, None)))
    if settings.b24notify_config is not None:
        for entry in load_portal_file(settings.b24notify_config):
            specs.append(_webhook_portal(parse_webhook_url(entry.webhook_url.get_secret_value()),
                                         entry.application_token.get_secret_value(), entry.member_id,
                                         _options(settings, entry)))
    seen: set[str] = set()
    for spec in specs:
        if spec.key in seen:
            raise ConfigError(f"B24NOTIFY_CONFIG: portal {spec.key} is configured twice")
        seen.add(spec.key)
    return specs


def load_portal_file(path: Path) -> list[PortalEntry]:
    try:
        raw: dict[str, Any] = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"B24NOTIFY_CONFIG: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"B24NOTIFY_CONFIG: {path} is not valid TOML: {exc}") from None
    try:
        return PortalFile.model_validate(raw).portals
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"B24NOTIFY_CONFIG: {path}: {where}: {message}") from None


def app_portal(settings: Settings, *, domain: str, client_endpoint: str, application_token: str,
               member_id: str, user_id: int) -> PortalSpec:
    """An app install as a portal. Chat goes to ``NOTIFY_CHAT`` or else to who installed the app."""
    parts = urlsplit(client_endpoint)
    installer_chat = str(user_id) if user_id else None
    return PortalSpec(key=domain, portal_url=f"{parts.scheme}://{parts.netloc}",
                      application_token=application_token, member_id=member_id,
                      **_options(settings, None, default_chat=installer_chat))


def _options(settings: Settings, entry: PortalEntry | None, default_chat: str | None = None) -> dict[str, Any]:
    """The per-portal settings: the TOML entry's where it sets them, else the global ones."""
    def own(name: str) -> Any:
        return getattr(entry, name) if entry is not None else None

    chat = own("notify_chat")
    email = own("notify_email")
    return {
        "rate_limit": own("rate_limit") or settings.b24_rate_limit,
        "notify_chat": chat if chat is not None else (settings.notify_chat or default_chat),
        "notify_email": tuple(email if email is not None else settings.notify_email),
    }


def _webhook_portal(webhook: Webhook, token: str, member_id: str | None, options: dict[str, Any]) -> PortalSpec:
    return PortalSpec(key=webhook.netloc, portal_url=webhook.portal_url, application_token=token,
                      member_id=member_id, webhook=webhook, **options)


def require_channels(settings: Settings) -> None:
    """What a worker needs on top of ``Settings.require_portal``: every webhook portal has a
    channel, and e-mail is fully configured when any portal sends it."""
    settings.require_portal()
    emails = bool(settings.notify_email)
    if not settings.app_mode:
        portals = webhook_portals(settings)
        for portal in portals:
            if not portal.notify_chat and not portal.notify_email:
                raise ConfigError("NOTIFY_CHAT / NOTIFY_EMAIL: set at least one of them"
                                  + (f" (portal {portal.key})" if len(portals) > 1 else ""))
        emails = emails or any(p.notify_email for p in portals)
    if emails:
        if settings.smtp_url is None:
            raise ConfigError("SMTP_URL: is required when NOTIFY_EMAIL is set")
        if settings.email_from is None:
            raise ConfigError("EMAIL_FROM: is required when NOTIFY_EMAIL is set")
