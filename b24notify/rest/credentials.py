"""How a request proves who it is: an incoming webhook's URL, or an app's OAuth access token.

``RestClient`` asks its credentials where to send a method and what to add to the parameters,
and, after ``expired_token``, to renew once. Both kinds only ever point at the portal they were
configured or installed for: nothing from an event payload reaches them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from b24notify.settings import Webhook


class Credentials(Protocol):
    @property
    def portal(self) -> str: ...

    def target(self, method: str) -> tuple[str, dict[str, str]]:
        """The URL for ``method`` and the auth parameters to send with it (in the body)."""
        ...

    def renew(self, rejected: Mapping[str, str]) -> bool:
        """The portal said ``expired_token`` for ``rejected``: get fresh ones. True: try again."""
        ...


class WebhookCredentials:
    def __init__(self, webhook: Webhook) -> None:
        self.webhook = webhook

    @property
    def portal(self) -> str:
        return self.webhook.netloc

    def target(self, method: str) -> tuple[str, dict[str, str]]:
        return self.webhook.base_url + method, {}

    def renew(self, rejected: Mapping[str, str]) -> bool:
        return False  # a webhook has no token to refresh
