"""The result rules of docs/protocol.md §3, on the portal model alone."""

from __future__ import annotations

import pytest

from b24notify.devtools.simulator.portal import (
    AWAITING_CONTROL,
    COMPLETED,
    RESULT_CLOSED,
    RESULT_OPEN,
    Portal,
    ResultAlreadyExists,
    TaskNotFound,
    bbcode_to_html,
)


@pytest.fixture
def portal() -> Portal:
    return Portal()


def _task(portal: Portal, status: int = 2) -> int:
    return portal.add_task("Sign the contract", responsible_id=503, created_by=1, status=status).id


def test_results_close_when_task_completed(portal: Portal) -> None:
    task_id = _task(portal)
    _, result = portal.add_comment(task_id, author_id=503, message="Signed", as_result=True)
    assert result is not None and result.status == RESULT_OPEN
    portal.complete_task(task_id)
    assert [r.status for r in portal.task_results(task_id)] == [RESULT_CLOSED]


def test_results_close_when_task_awaits_control(portal: Portal) -> None:
    task_id = _task(portal)
    portal.add_comment(task_id, author_id=503, message="Signed", as_result=True)
    portal.update_task(task_id, status=AWAITING_CONTROL)
    assert [r.status for r in portal.task_results(task_id)] == [RESULT_CLOSED]


def test_closing_moves_updated_at_and_changed_date(portal: Portal) -> None:
    task_id = _task(portal)
    _, result = portal.add_comment(task_id, author_id=503, message="Signed", as_result=True)
    assert result is not None
    before = portal.task(task_id).changed_date
    portal.complete_task(task_id)
    assert result.updated_at >= result.created_at
    assert portal.task(task_id).changed_date >= before


def test_renew_never_reopens_a_result(portal: Portal) -> None:
    task_id = _task(portal)
    portal.add_comment(task_id, author_id=503, message="Signed", as_result=True)
    portal.complete_task(task_id)
    portal.renew_task(task_id)
    assert portal.task(task_id).status == 2
    assert [r.status for r in portal.task_results(task_id)] == [RESULT_CLOSED]


@pytest.mark.parametrize("status", [AWAITING_CONTROL, COMPLETED])
def test_result_created_in_a_finished_task_is_closed(portal: Portal, status: int) -> None:
    task_id = _task(portal, status=status)
    _, result = portal.add_comment(task_id, author_id=503, message="Late result", as_result=True)
    assert result is not None and result.status == RESULT_CLOSED


def test_result_pinned_again_is_new(portal: Portal) -> None:
    task_id = _task(portal)
    comment, first = portal.add_comment(task_id, author_id=503, message="Signed", as_result=True)
    assert first is not None
    portal.complete_task(task_id)
    portal.renew_task(task_id)
    second = portal.pin_comment(comment.id, by_user=1)
    assert second.id != first.id
    assert second.comment_id == first.comment_id == comment.id
    assert second.status == RESULT_OPEN
    assert [r.id for r in portal.task_results(task_id)] == [second.id, first.id]


def test_open_result_cannot_be_pinned_again(portal: Portal) -> None:
    task_id = _task(portal)
    comment, _ = portal.add_comment(task_id, author_id=503, message="Signed", as_result=True)
    with pytest.raises(ResultAlreadyExists):
        portal.pin_comment(comment.id, by_user=1)


def test_pinning_makes_the_pinner_the_author(portal: Portal) -> None:
    task_id = _task(portal)
    comment, _ = portal.add_comment(task_id, author_id=503, message="Signed")
    assert portal.pin_comment(comment.id, by_user=1).created_by == 1


def test_unpin_removes_closed_results_too(portal: Portal) -> None:
    task_id = _task(portal)
    comment, _ = portal.add_comment(task_id, author_id=503, message="Signed", as_result=True)
    portal.complete_task(task_id)
    portal.unpin_comment(comment.id)
    assert portal.task_results(task_id) == []
    assert comment.id in portal.comments  # the comment itself stays


def test_deleting_a_task_removes_its_results(portal: Portal) -> None:
    task_id = _task(portal)
    portal.add_comment(task_id, author_id=503, message="Signed", as_result=True)
    portal.delete_task(task_id)
    assert portal.results == {}
    with pytest.raises(TaskNotFound):
        portal.task_results(task_id)


def test_results_are_listed_newest_first(portal: Portal) -> None:
    task_id = _task(portal)
    ids = [portal.add_comment(task_id, author_id=503, message=f"r{i}", as_result=True)[1].id  # type: ignore[union-attr]
           for i in range(3)]
    assert [r.id for r in portal.task_results(task_id)] == sorted(ids, reverse=True)


def test_editing_a_comment_edits_only_its_open_result(portal: Portal) -> None:
    task_id = _task(portal)
    comment, result = portal.add_comment(task_id, author_id=503, message="Draft", as_result=True)
    portal.update_comment(task_id, comment.id, "Final")
    assert result is not None and result.text == "Final"
    portal.complete_task(task_id)
    portal.update_comment(task_id, comment.id, "Changed after closing")
    assert result.text == "Final"


def test_new_card_results_report_comment_zero(portal: Portal) -> None:
    portal.new_card = True
    task_id = _task(portal)
    comment, result = portal.add_comment(task_id, author_id=503, message="Signed", as_result=True)
    assert result is not None and result.comment_id == 0
    assert comment.message_id > 0


def test_formatted_text_escapes_html_and_converts_style_tags() -> None:
    assert bbcode_to_html("respond on [B]Monday[/B] <script>&") == "respond on <b>Monday</b> &lt;script&gt;&amp;"
    assert bbcode_to_html("[i]a[/i][u]b[/u][s]c[/s][url]x[/url]") == "<i>a</i><u>b</u><s>c</s>[url]x[/url]"


def test_a_task_born_finished_was_closed_by_its_creator_or_the_caller(portal: Portal) -> None:
    born = portal.add_task("Done already", responsible_id=503, created_by=505, status=COMPLETED)
    assert (born.closed_by, born.closed_date is not None) == (505, True)
    by_caller = portal.add_task("Done", responsible_id=503, created_by=505, status=AWAITING_CONTROL, by_user=1)
    assert by_caller.closed_by == 1
    assert portal.add_task("Open", responsible_id=503, created_by=505).closed_by == 0


def test_one_tag_is_one_slot_across_users(portal: Portal) -> None:
    first = portal.notify(503, "a", author_id=1, tag="t", client_id="app")
    second = portal.notify(504, "b", author_id=1, tag="t", client_id="app")
    other_app = portal.notify(503, "c", author_id=1, tag="t", client_id="other")
    assert (first.replaced_by, second.removed, other_app.removed) == (second.id, False, False)
    assert [n.id for n in portal.shown_notifications()] == [second.id, other_app.id]
    assert [n.id for n in portal.shown_notifications(503)] == [other_app.id]
