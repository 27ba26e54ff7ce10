"""``b24notify sync --task ID``: one task, now, in this process, with the diff printed."""

from __future__ import annotations

from b24notify.keys import task_member
from b24notify.redis_conn import connect
from b24notify.settings import Settings
from b24notify.workers.context import WorkerContexts
from b24notify.workers.deliver import deliver
from b24notify.workers.sync import TaskSync


def sync_now(settings: Settings, task_id: int, *, send: bool = True, portal: str | None = None) -> int:
    # A tool, not a serving process: it never sets connected_at (before going live, it must not).
    contexts = WorkerContexts(settings, connect(settings.redis_url), serving=False)
    try:
        served = contexts.directory.portals()
        if portal is None and len(served) == 1:
            portal = served[0]
        ctx = contexts.get(portal) if portal else None
        if ctx is None:
            print(f"say which portal with --portal: one of {', '.join(served) or '(none installed)'}")
            return 2
        member = task_member(ctx.portal, task_id)
        ctx.tasks.schedule(member, at=0, trigger="manual")
        claims = ctx.tasks.claim(1, ctx.settings.b24notify_lease_seconds, only=member)
        if not claims:
            print(f"task {task_id}: a worker is syncing it right now; it will run again after that")
            return 1
        outcome = TaskSync(ctx).run(claims[0])
        print(f"task {task_id}: {_describe(outcome.status, outcome.detail, ctx.spec.webhook is not None)}")
        if outcome.diff is not None:
            for result_id in outcome.diff.baseline:
                print(f"  baseline  result {result_id}")
            for change in outcome.diff.changes:
                print(f"  {change.kind.value:<9} result {change.result_id}")
            if not outcome.diff.changes and not outcome.diff.baseline:
                print("  no changes")
        if send:
            for notice in outcome.notices:
                for claim in ctx.deliveries.claim(1, ctx.settings.b24notify_lease_seconds, only=notice.key):
                    print(f"  {notice.target.channel:<9} {notice.target.key:<24} {deliver(ctx, claim).status}")
        return 0 if outcome.status in ("synced", "dropped") else 1
    finally:
        contexts.close()


def _describe(status: str, detail: str, webhook: bool) -> str:
    if status == "dropped" and detail.endswith(" 0"):
        # Error "0" means no such task or no access to it (docs/protocol.md §3): the portal does not say which.
        whose = "the webhook's user" if webhook else "the user who installed the app"
        return f"not found or not visible to {whose} ({detail}); its stored state is forgotten"
    return f"{status}{' (' + detail + ')' if detail else ''}"
