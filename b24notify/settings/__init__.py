"""One settings object, built at the edge (CLI / app factory) from the environment and an optional
env file, then passed down. Nothing here reads the environment at import time.

The variable names are the operator interface (README "Configuration"): keep them stable.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from b24notify.settings.console import MIN_SECRET_CHARS, PasswordHash, check_password, derive_session_key
from b24notify.settings.rates import RateLimit
from b24notify.settings.redis_url import SENTINEL_SCHEMES, check_redis_url, scheme_of
from b24notify.settings.smtp import SmtpConfig

WEBHOOK_PATH = re.compile(r"^/rest/(?P<user>\d+)/(?P<code>[^/]+)/?$")
DIALOG_ID = re.compile(r"^(chat\d+|sg\d+|\d+)$")
EMAIL_ADDRESS = re.compile(r"^[^@\s,<>\"]+@[^@\s,<>\"]+$")
NOTIFIABLE_KINDS = ("new", "closed", "edited", "removed")
# The people of a task a route can name (issue 9, README "Who gets alerts"): the task's creator
# (who set it and waits for its result), responsible person, accomplices and auditors, and the
# result's author (who waits for the result to be accepted).
ROLES = ("creator", "responsible", "accomplices", "auditors", "author")
LANGUAGES = ("en", "ru")


class ConfigError(Exception):
    """Configuration is missing or invalid. The message names the variable and never its value."""


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Webhook:
    """The incoming-webhook base URL, split. ``code`` is a secret: never log ``base_url``."""

    base_url: str = field(repr=False)  # "https://acme.bitrix24.com/rest/1/abc/" (always ends with "/")
    scheme: str
    host: str
    netloc: str  # host[:port], what the portal sends as auth[domain]
    user_id: int
    code: str = field(repr=False)

    @property
    def portal_url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    @property
    def redacted(self) -> str:
        return f"{self.portal_url}/rest/{self.user_id}/***/"


def parse_webhook_url(url: str) -> Webhook:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must look like https://PORTAL/rest/USER_ID/CODE/")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must use https (http is accepted only for loopback hosts)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not carry a query, fragment or user info")
    match = WEBHOOK_PATH.match(parts.path)
    if not match:
        raise ValueError("path must be /rest/USER_ID/CODE/")
    base = f"{parts.scheme}://{parts.netloc}/rest/{match['user']}/{match['code']}/"
    return Webhook(base, parts.scheme, parts.hostname.lower(), parts.netloc.lower(),
                   int(match["user"]), match["code"])


def portal_zone(name: str) -> tzinfo:
    """The zone named by B24_PORTAL_TIMEZONE; UTC needs no time zone database."""
    if name.strip().upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone name such as Europe/Berlin") from None


def _all_known(values: list[str], known: tuple[str, ...]) -> list[str]:
    for value in values:
        if value not in known:
            raise ValueError(f"{value[:30]!r} is not one of {', '.join(known)}")
    return values


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_file_encoding="utf-8")

    redis_url: str = "redis://127.0.0.1:6379/0"
    b24_webhook_url: SecretStr | None = None
    b24_application_token: SecretStr | None = None
    b24_member_id: str | None = None
    notify_chat: str | None = None
    notify_email: Annotated[list[str], NoDecode] = Field(default_factory=list)
    smtp_url: SecretStr | None = None
    email_from: str | None = None
    notify_kinds: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["new", "closed"])
    # One route for every task to these people of the task (roles, comma-separated).
    notify_people: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The language of alerts where the reader's own preference does not say (en | ru).
    notify_language: str = "en"

    b24_rate_limit: str = "2/50"
    b24_rate_reserve: float = Field(default=0.2, ge=0, lt=1)
    b24_operating_limit_seconds: float = Field(default=480.0, gt=0)
    b24_reconcile_share: float = Field(default=0.2, ge=0, le=1)
    b24notify_watch_hot_seconds: float = Field(default=30.0, gt=0)
    b24notify_watch_warm_seconds: float = Field(default=300.0, gt=0)
    b24notify_watch_cold_seconds: float = Field(default=1800.0, gt=0)
    b24notify_watch_idle_days: float = Field(default=7.0, gt=0)
    b24notify_sweep_seconds: float = Field(default=60.0, gt=0)
    # How long a task's known results are kept after its last sync; a result first seen more than
    # this long after it was created is a silent baseline (docs/guarantees.md "Redis memory").
    b24notify_results_keep_days: float = Field(default=30.0, gt=0)
    b24notify_key_prefix: str = "b24n"
    b24notify_queue: str = "b24notify"
    b24notify_debounce_seconds: float = Field(default=1.0, ge=0, le=60)
    b24notify_debounce_max_seconds: float = Field(default=5.0, ge=0, le=600)
    # Fleet-wide events per second from which a task waits the whole debounce cap (0: never).
    b24notify_burst_events_per_second: int = Field(default=50, ge=0)
    b24notify_lease_seconds: float = Field(default=120.0, ge=5, le=3600)
    # A task whose runs fail this many times in a row for a cause of its own (an error while syncing
    # it, an unreadable answer, a worker that died on it) is parked instead of retried for ever. At
    # least 3: a healthy task caught in a batch that died twice has two strikes, then runs alone.
    b24notify_task_max_attempts: int = Field(default=8, ge=3, le=1000)
    # The portals' time zone (IANA name): how to read a time the portal sends without an offset.
    b24_portal_timezone: str = "UTC"
    # The longest a dispatcher waits without a wake-up (events wake it at once; a pending run
    # released, a retry or another worker's reap are found within this).
    b24notify_poll_seconds: float = Field(default=0.1, gt=0, le=5)
    b24notify_gather_seconds: float = Field(default=0.3, ge=0, le=10)
    b24notify_sync_batch: int = Field(default=50, ge=1, le=50)
    b24notify_delivery_batch: int = Field(default=10, ge=1, le=100)
    b24notify_task_cache_seconds: int = Field(default=60, ge=0)
    b24notify_user_cache_seconds: int = Field(default=3600, ge=0)
    b24notify_delivery_retry_seconds: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [10.0, 60.0, 300.0, 1800.0, 7200.0]
    )
    b24notify_rest_timeout_seconds: float = Field(default=20.0, gt=0, le=60)
    # Before a chat message leaves, wait up to this long for a replica to hold its "in flight" mark
    # (Redis WAIT; docs/guarantees.md "Redis failover"). Unset: 1000 with a redis+sentinel:// URL,
    # 0 (no wait) otherwise; set it for a primary with replicas behind a plain redis:// URL.
    b24notify_replica_wait_ms: int | None = Field(default=None, ge=0, le=10000)
    b24notify_log_level: str = "INFO"
    # If set, GET /metrics answers only "Authorization: Bearer <this>" (it names portals and volumes).
    b24notify_metrics_token: SecretStr | None = None

    # OAuth application mode (docs/protocol.md §8): set B24_CLIENT_ID and B24_CLIENT_SECRET; portals then
    # come from ONAPPINSTALL events, stored in Redis.
    b24_client_id: str | None = None
    b24_client_secret: SecretStr | None = None
    b24_oauth_url: str = "https://oauth.bitrix.info/oauth/token/"
    # Where Bitrix24 reaches the web process, e.g. https://notify.example.com (for event.bind).
    b24notify_public_url: str | None = None
    # A TOML file with several webhook-mode portals ([[portals]] tables; README "Several portals").
    b24notify_config: Path | None = None
    # Where `b24notify up` keeps the data of the redis-server it starts when none answers at
    # REDIS_URL (default $XDG_DATA_HOME/b24notify, i.e. ~/.local/share/b24notify).
    b24notify_data_dir: Path | None = None
    # The operator console at /console (issue 10, README "Console"): off (404) unless one of the
    # two is set. The hash is what `b24notify console hash-password` prints.
    b24notify_console_password: SecretStr | None = None
    b24notify_console_password_hash: SecretStr | None = None
    # Signs the console's session cookie; derived from the password (or hash) when unset
    # (settings/console.py derive_session_key).
    b24notify_console_secret: SecretStr | None = None

    @field_validator("notify_email", "notify_kinds", "notify_people", "b24notify_delivery_retry_seconds",
                     mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("b24_webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            parse_webhook_url(value.get_secret_value())
            return value
        return None

    @field_validator("notify_chat")
    @classmethod
    def _dialog(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not DIALOG_ID.match(value.strip()):
            raise ValueError("must be a DIALOG_ID: chatNNN, sgNNN or a user id")
        return value.strip()

    @field_validator("notify_email")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        for address in value:
            if not EMAIL_ADDRESS.match(address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return value

    @field_validator("email_from")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is not None and value.strip() and not EMAIL_ADDRESS.match(value.strip()):
            raise ValueError("is not an e-mail address")
        return value.strip() if value and value.strip() else None

    @field_validator("smtp_url")
    @classmethod
    def _smtp(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        SmtpConfig.from_url(value.get_secret_value())
        return value

    @field_validator("notify_kinds")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        return _all_known(value, NOTIFIABLE_KINDS)

    @field_validator("notify_people")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        return _all_known(value, ROLES)

    @field_validator("notify_language")
    @classmethod
    def _language(cls, value: str) -> str:
        language = value.strip().lower() or "en"
        if language not in LANGUAGES:
            raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
        return language

    @field_validator("b24_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        RateLimit.parse(value)
        return value

    @field_validator("b24_oauth_url", "b24notify_public_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an https:// URL")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError("must use https (http is accepted only for loopback hosts)")
        return value

    @field_validator("b24_portal_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        portal_zone(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str) -> str:
        check_redis_url(value)
        return value

    @field_validator("b24notify_console_password")
    @classmethod
    def _console_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        check_password(value.get_secret_value())
        return value

    @field_validator("b24notify_console_password_hash")
    @classmethod
    def _console_hash(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        PasswordHash.parse(value.get_secret_value())
        return SecretStr(value.get_secret_value().strip())

    @field_validator("b24notify_console_secret")
    @classmethod
    def _console_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters long (e.g. `openssl rand -hex 32`)")
        return value

    @model_validator(mode="after")
    def _one_console_password(self) -> Settings:
        if self.b24notify_console_password is not None and self.b24notify_console_password_hash is not None:
            raise ValueError("B24NOTIFY_CONSOLE_PASSWORD and B24NOTIFY_CONSOLE_PASSWORD_HASH are both set: "
                             "keep one of them")
        return self

    # -- derived views ---------------------------------------------------------------------------

    @property
    def replica_wait_ms(self) -> int:
        if self.b24notify_replica_wait_ms is not None:
            return self.b24notify_replica_wait_ms
        return 1000 if scheme_of(self.redis_url) in SENTINEL_SCHEMES else 0

    @property
    def webhook(self) -> Webhook:
        if self.b24_webhook_url is None:
            raise ConfigError("B24_WEBHOOK_URL: is not set")
        return parse_webhook_url(self.b24_webhook_url.get_secret_value())

    @property
    def portal(self) -> str:
        """The portal's id in our Redis keys and logs: the host[:port] of the webhook URL."""
        return self.webhook.netloc

    @property
    def app_mode(self) -> bool:
        """OAuth application mode: portals install the app and are kept in Redis."""
        return bool(self.b24_client_id)

    def require_portal(self, *, application_token: bool = True) -> None:
        """What both web and worker need: at least one portal to serve, each fully described.
        ``application_token=False`` for ``register``, whose own steps say where to get that token."""
        if self.b24_client_id is not None and (
                self.b24_client_secret is None or not self.b24_client_secret.get_secret_value()):
            raise ConfigError("B24_CLIENT_SECRET: is required when B24_CLIENT_ID is set")
        if self.b24_webhook_url is not None:
            if application_token and (
                    self.b24_application_token is None or not self.b24_application_token.get_secret_value()):
                raise ConfigError("B24_APPLICATION_TOKEN: is not set (the outbound webhook's token)")
        elif self.b24notify_config is None and not self.app_mode:
            raise ConfigError("B24_WEBHOOK_URL: is not set (https://PORTAL/rest/USER_ID/CODE/); "
                              "or give B24NOTIFY_CONFIG (several portals) or B24_CLIENT_ID (app mode)")

    @property
    def channel_names(self) -> tuple[str, ...]:
        names = []
        if self.notify_chat:
            names.append("chat")
        if self.notify_email:
            names.append("email")
        if self.notify_people:
            names.append("people")
        return tuple(names)

    @property
    def console_enabled(self) -> bool:
        """The operator console is served (/console): a password or its hash is set."""
        return self.b24notify_console_password is not None or self.b24notify_console_password_hash is not None

    def console_session_key(self) -> bytes:
        """The key that signs the console's session cookie: B24NOTIFY_CONSOLE_SECRET, or one
        derived from the password (or its hash) and the other secrets (settings/console.py)."""
        if self.b24notify_console_secret is not None:
            return self.b24notify_console_secret.get_secret_value().encode("utf-8", "surrogateescape")
        base = self.b24notify_console_password or self.b24notify_console_password_hash
        if base is None:
            raise ConfigError("B24NOTIFY_CONSOLE_PASSWORD: is not set (the console is off)")
        others = tuple(secret.get_secret_value() for secret in (
            self.b24_webhook_url, self.b24_application_token, self.b24_client_secret) if secret is not None)
        return derive_session_key(base.get_secret_value(), key_prefix=self.b24notify_key_prefix, others=others)

    @property
    def email_configured(self) -> bool:
        """Can we send e-mail at all (SMTP_URL and EMAIL_FROM)."""
        return self.smtp_url is not None and self.email_from is not None


def load_settings(env_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from the environment (and ``env_file`` when given), or raise ConfigError
    with one line that names the variable and what is wrong, never the value."""
    try:
        kwargs: dict[str, Any] = dict(overrides or {})
        if env_file is not None:
            kwargs["_env_file"] = str(env_file)
        return Settings(**kwargs)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "config"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}") from None
    except SettingsError as exc:
        reason = str(exc).split(" from source")[0].replace("error parsing value for field", "cannot read")
        raise ConfigError(reason) from None
