"""The simulator's one config object, built by the caller (tests, CLI) and passed down."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

# What POST /_sim/config may change while the simulator runs. Host, port, the webhook's and the
# OAuth app's credentials are fixed once the server listens.
LIVE_FIELDS = frozenset({
    "handler_url", "app_handler_url", "application_token", "member_id", "event_handler_id",
    "bucket_capacity", "bucket_drain_per_second", "operating_limit_seconds", "operating_cost_seconds",
    "seed", "new_card", "event_drop_probability", "event_duplicate_probability", "event_reorder_max_ms",
    "event_timeout_seconds",
})


class InvalidConfig(ValueError):
    pass


@dataclass(frozen=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port when the server starts
    webhook_user_id: int = 1
    webhook_code: str = "sim-webhook-code"
    member_id: str = "a223c6b3710f85df22e9377d6c4f7553"
    application_token: str = "sim-application-token"
    handler_url: str | None = None  # None: events are logged, not sent
    event_handler_id: int = 1
    domain: str | None = None  # auth[domain]; default "host:port"
    bucket_capacity: int = 50  # 0 turns the rate limit off
    bucket_drain_per_second: float = 2.0
    operating_limit_seconds: float | None = None  # per method per 10 minutes; None = no limit
    operating_cost_seconds: float | None = None  # charge this per call instead of the measured time
    seed: int = 0
    new_card: bool = False
    event_drop_probability: float = 0.0
    event_duplicate_probability: float = 0.0
    event_reorder_max_ms: int = 0
    event_timeout_seconds: float = 5.0
    # The OAuth application (docs/protocol.md §8). Used only when the simulator makes its own
    # OAuthAuthority; simulators handed a shared one answer with that one's.
    oauth_client_id: str = "app.sim.1"
    oauth_client_secret: str = "sim-app-secret"
    access_token_ttl_seconds: float = 3600.0
    app_handler_url: str | None = None  # where ONAPPINSTALL/ONAPPUNINSTALL go; None: logged, not sent
    # Serve HTTPS with this certificate and key (PEM files) instead of plain HTTP: for clients that
    # only speak https://, as the real portal does (b24pysdk builds its URLs so).
    tls_certfile: str | None = None
    tls_keyfile: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_certfile else "http"

    @property
    def portal_domain(self) -> str:
        return self.domain or f"{self.host}:{self.port}"

    @property
    def client_endpoint(self) -> str:
        """The portal's REST root for OAuth calls, as tokens and events give it."""
        return f"{self.scheme}://{self.portal_domain}/rest/"

    def with_changes(self, changes: dict[str, Any]) -> SimulatorConfig:
        """A copy with the given live fields changed, each converted to the field's type."""
        unknown = set(changes) - LIVE_FIELDS
        if unknown:
            raise InvalidConfig(f"cannot change: {', '.join(sorted(unknown))}")
        types = {f.name: f.type for f in fields(self)}
        try:
            converted = {name: _convert(str(types[name]), value) for name, value in changes.items()}
        except (TypeError, ValueError) as exc:
            raise InvalidConfig(f"bad config value: {exc}") from None
        return replace(self, **converted)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _convert(type_name: str, value: Any) -> Any:
    if value is None:
        if "None" not in type_name:
            raise ValueError("null is not allowed here")
        return None
    if type_name.startswith("bool"):
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a boolean")
        return value
    if type_name.startswith("int"):
        return int(value)
    if type_name.startswith("float"):
        return float(value)
    return str(value)
