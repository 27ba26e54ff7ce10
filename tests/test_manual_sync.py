"""`b24notify sync --task ID` says in words what happened to a task it cannot read."""

from __future__ import annotations

from b24notify.workers.manual import sync_now


def test_sync_of_a_missing_task_says_not_found_or_not_visible(settings, redis, capsys):
    assert sync_now(settings, 99999, send=False) == 0
    out = capsys.readouterr().out
    assert "task 99999: not found or not visible to the webhook's user" in out, out


def test_sync_of_an_existing_task_prints_its_diff(settings, redis, user, capsys):
    task = user.add_task("Write the report")
    user.comment(task, "Report attached", as_result=True)
    assert sync_now(settings, task, send=False) == 0
    out = capsys.readouterr().out
    assert f"task {task}: synced" in out, out
