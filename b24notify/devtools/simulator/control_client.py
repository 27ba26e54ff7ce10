"""A small sync client for a running simulator's ``/_sim/`` control API, for tests and scripts."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import httpx


class SimulatorControl:
    def __init__(self, base_url: str, *, timeout: float = 30.0, verify: ssl.SSLContext | bool = True) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/") + "/_sim/", timeout=timeout, verify=verify)

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, **query: str) -> Any:
        response = self._http.get(path, params=query)
        response.raise_for_status()
        return response.json()

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    def messages(self) -> list[dict[str, Any]]:
        return list(self._get("messages")["messages"])

    def notifications(self, user_id: int | None = None) -> dict[int, dict[str, list[dict[str, Any]]]]:
        """Per user: ``{"shown": [...], "history": [...]}``. ``shown`` is what their notification
        list holds now (a later notification with the same app TAG removed the earlier ones, for
        whichever user); ``history`` every notification added for them, oldest first, each
        ``{"id", "user_id", "author_id", "kind", "message", "message_out", "tag", "sub_tag",
        "client_id", "portal_tag", "attach", "at", "removed", "replaced_by"}``. With ``user_id``,
        just that user (present even with nothing)."""
        query = {} if user_id is None else {"user": str(user_id)}
        users = self._get("notifications", **query)["users"]
        return {int(key): {"shown": list(entry["shown"]), "history": list(entry["history"])}
                for key, entry in users.items()}

    def shown_notifications(self, user_id: int) -> list[dict[str, Any]]:
        """The notifications ``user_id`` sees now, oldest first."""
        return self.notifications(user_id)[user_id]["shown"]

    def notification_history(self) -> list[dict[str, Any]]:
        """Every notification added, for anyone, oldest first (removed ones marked)."""
        return list(self._get("notifications")["notifications"])

    def calls(self, method: str | None = None) -> dict[str, Any]:
        """``{"calls": [...], "counts": {"by_method", "by_status", "by_error"}}``"""
        return dict(self._get("calls", **({"method": method} if method else {})))

    def events(self) -> list[dict[str, Any]]:
        return list(self._get("events")["events"])

    def wait_events(self, timeout: float = 5.0) -> bool:
        """True once every queued event has been delivered (or failed)."""
        return bool(self._send("POST", "events/wait", {"timeout": timeout})["idle"])

    def add_faults(self, *rules: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list(self._send("POST", "faults", {"rules": list(rules)})["rules"])

    def clear_faults(self) -> None:
        self._send("DELETE", "faults")

    def configure(self, **changes: Any) -> dict[str, Any]:
        return dict(self._send("POST", "config", changes))

    def state(self) -> dict[str, Any]:
        return dict(self._get("state"))

    def add_user(self, name: str, last_name: str = "", email: str = "", *, user_id: int | None = None,
                 active: bool = True) -> dict[str, Any]:
        """``{"id", "name", "last_name", "email", "active"}``; the next free id unless ``user_id``."""
        body = {"name": name, "last_name": last_name, "email": email, "active": active, "id": user_id}
        return dict(self._send("POST", "users", body))

    def update_user(self, user_id: int, *, name: str | None = None, last_name: str | None = None,
                    email: str | None = None, active: bool | None = None) -> dict[str, Any]:
        """Change what is given, e.g. ``update_user(504, active=False)`` to dismiss someone."""
        changes = {"name": name, "last_name": last_name, "email": email, "active": active}
        return dict(self._send("POST", f"users/{user_id}", {k: v for k, v in changes.items() if v is not None}))

    def users(self) -> list[dict[str, Any]]:
        return list(self._get("users")["users"])

    def webhook_url(self, user_id: int) -> str:
        """The incoming webhook of ``user_id`` (made on first use): calls through it act as them."""
        return str(self._send("POST", "webhooks", {"user_id": user_id})["url"])

    def reset(self) -> None:
        self._send("POST", "reset")

    def install_app(self, handler_url: str | None = None, user_id: int = 1) -> dict[str, Any]:
        """Install the OAuth app (ONAPPINSTALL is delivered before this returns):
        ``{"application_token", "member_id", "handler", "delivered", "status"}``."""
        body: dict[str, Any] = {"user_id": user_id}
        if handler_url is not None:
            body["handler_url"] = handler_url
        return dict(self._send("POST", "app/install", body))

    def uninstall_app(self) -> dict[str, Any]:
        """``{"member_id", "delivered", "status", "deliveries": [{"handler", "delivered", "status"}]}``"""
        return dict(self._send("POST", "app/uninstall"))

    def app(self) -> dict[str, Any]:
        """``{"installed", "handler_url", "member_id", "user_id", "application_token", "bindings"}``"""
        return dict(self._get("app"))

    def bindings(self) -> list[dict[str, Any]]:
        return list(self.app()["bindings"])

    def expire_tokens(self) -> None:
        self._send("POST", "oauth/expire")

    def oauth_stats(self) -> dict[str, Any]:
        """``{"refreshes", "invalid_grants", "requests": [{"seq", "at", "grant_type", "outcome", "member_id"}]}``"""
        return dict(self._get("oauth"))
