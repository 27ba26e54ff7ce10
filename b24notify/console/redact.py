"""The last guard: a page never shows a secret of the settings (webhook codes and URLs, application
tokens, the SMTP URL and password, Apprise URLs, the OAuth client secret, the metrics token, the
console's own password and key). Pages render only what is safe to show; this also catches a
secret that reached them inside data, e.g. an error message a channel recorded verbatim."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from b24notify.portals.spec import PortalSpec
from b24notify.settings import Settings
from b24notify.settings.smtp import SmtpConfig

MIN_SECRET_CHARS = 6  # shorter strings are not secrets worth the name, and would mangle words
MASK = "***"


def _secret_values(settings: Settings) -> Iterable[str]:
    for secret in (settings.b24_webhook_url, settings.b24_application_token, settings.smtp_url,
                   settings.b24_client_secret, settings.b24notify_metrics_token,
                   settings.b24notify_console_password, settings.b24notify_console_password_hash,
                   settings.b24notify_console_secret):
        if secret is not None:
            yield secret.get_secret_value()
    if settings.smtp_url is not None:
        try:
            password = SmtpConfig.from_url(settings.smtp_url.get_secret_value()).password
        except ValueError:
            password = None
        if password:
            yield password


def _spec_values(spec: PortalSpec) -> Iterable[str]:
    yield spec.application_token
    if spec.webhook is not None:
        yield spec.webhook.base_url
        yield spec.webhook.code
    yield from spec.apprise_urls.values()


class Redactor:
    def __init__(self, settings: Settings, specs: Iterable[PortalSpec]) -> None:
        found = set(_secret_values(settings))
        for spec in specs:
            found.update(_spec_values(spec))
        # Also as they look once HTML-escaped or URL-quoted; longest first, so a URL goes before
        # the code inside it.
        variants = set()
        for value in found:
            for form in (value, quote(value, safe=""), value.replace("&", "&amp;")):
                if len(form) >= MIN_SECRET_CHARS:
                    variants.add(form)
        self._secrets = sorted(variants, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
