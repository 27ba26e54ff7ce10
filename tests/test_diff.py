from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from b24notify.diff import StoredResult, diff_results, snapshot
from b24notify.results import MalformedResult, TaskResult, parse_results

CONNECTED = datetime.fromisoformat("2026-01-01T00:00:00+00:00")


def result(rid: int, *, comment: int = 100, status: int = 0, text: str = "done",
           created: datetime | None = None, files: tuple[int, ...] = (),
           updated: datetime | None = None) -> TaskResult:
    return TaskResult(id=rid, task_id=7, comment_id=comment, created_by=503,
                      created_at=created or CONNECTED + timedelta(hours=1), updated_at=updated,
                      status=status, text=text, formatted_text=text, files=files)


def state(*results: TaskResult) -> dict[int, StoredResult]:
    return {r.id: snapshot(r) for r in results}


def kinds(diff) -> list[tuple[str, int]]:
    return [(c.kind.value, c.result_id) for c in diff.changes]


def test_first_sight_results_from_before_connection_are_a_silent_baseline():
    old = result(1, created=CONNECTED - timedelta(days=3))
    fresh = result(2, created=CONNECTED + timedelta(minutes=5))
    diff = diff_results(None, [old, fresh], CONNECTED)
    assert diff.baseline == (1,)
    assert kinds(diff) == [("new", 2)]
    assert set(diff.state) == {1, 2}


def test_unknown_id_on_known_task_is_new_even_if_created_long_ago():
    old = result(5, created=CONNECTED - timedelta(days=30))
    diff = diff_results({}, [old], CONNECTED)
    assert kinds(diff) == [("new", 5)]


def test_status_open_to_closed_is_closed():
    before = result(3)
    after = result(3, status=1)
    diff = diff_results(state(before), [after], CONNECTED)
    assert kinds(diff) == [("closed", 3)]


def test_result_first_seen_closed_is_new_only():
    diff = diff_results({}, [result(4, status=1)], CONNECTED)
    assert kinds(diff) == [("new", 4)]
    assert diff.changes[0].result is not None and diff.changes[0].result.is_closed


def test_text_or_files_change_is_edited_with_a_revision():
    before = result(3, text="draft")
    after = result(3, text="final", files=(1,))
    diff = diff_results(state(before), [after], CONNECTED)
    assert kinds(diff) == [("edited", 3)]
    assert diff.changes[0].revision and diff.changes[0].key.startswith("3:edited:")


def test_missing_id_is_removed():
    diff = diff_results(state(result(3), result(4)), [result(4)], CONNECTED)
    assert kinds(diff) == [("removed", 3)]
    assert diff.changes[0].result is None


def test_comment_pinned_again_is_new_under_its_new_id():
    closed = result(10, comment=3197, status=1)
    again = result(11, comment=3197)
    diff = diff_results(state(closed), [closed, again], CONNECTED)
    assert kinds(diff) == [("new", 11)]


def test_new_task_card_zero_comment_ids_do_not_collide():
    a, b = result(20, comment=0), result(21, comment=0)
    diff = diff_results(state(a), [a, b], CONNECTED)
    assert kinds(diff) == [("new", 21)]


def test_unchanged_list_is_empty_diff():
    r = result(3)
    diff = diff_results(state(r), [r], CONNECTED)
    assert diff.is_empty


def test_closed_never_reported_twice():
    closed = result(3, status=1)
    assert diff_results(state(closed), [closed], CONNECTED).is_empty


def test_change_keys_are_stable_and_distinct():
    new_key = diff_results({}, [result(3)], CONNECTED).changes[0].key
    closed_key = diff_results(state(result(3)), [result(3, status=1)], CONNECTED).changes[0].key
    assert new_key == "3:new"
    assert closed_key == "3:closed"


def test_parse_results_accepts_the_documented_answer_and_php_quirks():
    raw = [{"id": 23, "taskId": 8017, "commentId": 3197, "createdBy": 503,
            "createdAt": "2025-07-15T14:30:00+02:00", "updatedAt": "2025-08-19T16:45:48+02:00",
            "status": 0, "text": "t", "formattedText": "t", "files": [1055]}]
    parsed = parse_results(raw)
    assert parsed[0].id == 23 and parsed[0].files == (1055,)
    assert parse_results({"0": dict(raw[0], id="24", status="1")})[0].status == 1
    assert parse_results([]) == [] and parse_results("") == []


def test_edits_back_and_forth_each_get_a_key_of_their_own():
    # A -> B -> A -> B: the second B is a new edit, and must not be taken for the first one.
    texts = ["A", "B", "A", "B"]
    versions = [result(3, text=text, updated=CONNECTED + timedelta(hours=2, minutes=i)) for i, text in enumerate(texts)]
    keys = []
    for before, after in pairwise(versions):
        (change,) = diff_results(state(before), [after], CONNECTED).changes
        assert change.kind.value == "edited"
        keys.append(change.key)
    assert len(set(keys)) == 3, keys


def test_a_list_cut_short_removes_nothing_and_keeps_what_it_did_not_show():
    known = state(result(1), result(2), result(3, status=1))
    diff = diff_results(known, [result(3, status=1), result(4)], CONNECTED, complete=False)
    assert kinds(diff) == [("new", 4)]
    assert set(diff.state) == {1, 2, 3, 4} and diff.state[1] == known[1]
    assert kinds(diff_results(known, [result(3, status=1)], CONNECTED)) == [("removed", 1), ("removed", 2)]


def row(created: str) -> dict:
    return {"id": 5, "taskId": 7, "commentId": 9, "createdBy": 503, "createdAt": created, "updatedAt": created,
            "status": 0, "text": "t", "formattedText": "t", "files": []}


def test_a_time_without_an_offset_does_not_break_the_diff():
    (naive,) = parse_results([row("2026-01-01T09:30:00")])
    assert naive.created_at == datetime(2026, 1, 1, 9, 30, tzinfo=UTC)  # UTC unless told otherwise
    assert kinds(diff_results(None, [naive], CONNECTED)) == [("new", 5)]


def test_a_time_without_an_offset_is_the_portals_wall_clock():
    tokyo = ZoneInfo("Asia/Tokyo")
    (naive,) = parse_results([row("2026-01-01T09:30:00")], tokyo)
    assert naive.created_at == datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    (offset,) = parse_results([row("2026-01-01T09:30:00+02:00")], tokyo)  # an offset always wins
    assert offset.created_at == datetime(2026, 1, 1, 7, 30, tzinfo=UTC)
    # Connected at 05:00 UTC: read in Tokyo time the result is older (baseline), read as UTC newer.
    connected = datetime(2026, 1, 1, 5, 0, tzinfo=UTC)
    assert diff_results(None, [naive], connected).baseline == (5,)


@pytest.mark.parametrize("answer", [42, "oops", [1], ["row"], [{"id": 1}], {"0": None}, True])
def test_an_answer_of_any_odd_shape_is_malformed_and_nothing_else(answer):
    with pytest.raises(MalformedResult):
        parse_results(answer)
