"""``b24notify register``: subscribe every served portal to the events b24notify needs.

App mode binds them over REST (idempotent: ``event.get`` first); workers also do it by themselves
for a portal whose install has not been bound yet (``WorkerContexts.periodic``). Webhook mode
prints the portal-side setup steps, the only way there.
"""

from __future__ import annotations

from collections.abc import Callable

from b24notify.portals.binding import bind_events, handler_url, webhook_setup_steps
from b24notify.portals.spec import webhook_portals
from b24notify.redis_conn import connect
from b24notify.rest.errors import B24Error
from b24notify.settings import ConfigError, Settings
from b24notify.workers.context import WorkerContexts


def register_all(settings: Settings, out: Callable[[str], None] = print) -> int:
    # Only the webhook URL is needed here: step 4 of the printed steps is how to get the
    # application token, so asking for it first would be a loop for a new user.
    settings.require_portal(application_token=False)
    failures = 0
    for spec in webhook_portals(settings):
        out(webhook_setup_steps(spec, settings.b24notify_public_url))
        if not spec.application_token:
            out("  (B24_APPLICATION_TOKEN is not set yet: step 4 gives it; serve and worker need it.)")
    if not settings.app_mode:
        return 0
    if not settings.b24notify_public_url:
        raise ConfigError("B24NOTIFY_PUBLIC_URL: is required to bind events in app mode "
                          "(where Bitrix24 reaches the web process, e.g. https://notify.example.com)")
    handler = handler_url(settings.b24notify_public_url)
    contexts = WorkerContexts(settings, connect(settings.redis_url))
    try:
        apps = [ctx for ctx in contexts.all() if ctx.spec.webhook is None]
        if not apps:
            out("No portal has installed the app yet: install it in Bitrix24, then run this again.")
        for ctx in apps:
            try:
                report = bind_events(ctx.client, handler)
            except B24Error as exc:
                out(f"Portal {ctx.portal}: event.get/event.bind failed: {exc.code} {exc.description}")
                failures += 1
                continue
            if report.ok:
                contexts.mark_bound(ctx.portal, handler)
            out(f"Portal {ctx.portal}: bound {', '.join(report.bound) or 'nothing new'}"
                f"; already bound {len(report.already)}"
                + (f"; FAILED {', '.join(f'{e} ({c})' for e, c in report.failed.items())}" if report.failed else ""))
            failures += 0 if report.ok else 1
    finally:
        contexts.close()
    return 1 if failures else 0
