"""``batch`` as ``CRestUtil::ParseBatchQuery`` runs it (docs/protocol.md §5): references to earlier
commands, PHP truthiness of ``halt``, no time for a failed command, and list paging."""

from __future__ import annotations

from typing import Any

import pytest

from b24notify.devtools.simulator import RunningSimulator

from .conftest import Rest


def _batch(rest: Rest, cmd: Any, **extra: Any) -> dict[str, Any]:
    response = rest.post("batch", {"cmd": cmd, **extra})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def _add_tasks(rest: Rest, count: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < count:
        chunk = min(50, count - len(ids))
        added = _batch(rest, {f"t{i}": f"tasks.task.add?fields[TITLE]=task%20{len(ids) + i}" for i in range(chunk)})
        ids += [int(added["result"][f"t{i}"]["task"]["id"]) for i in range(chunk)]
    return ids


def _title(rest: Rest, task_id: int) -> str:
    return str(rest.call("tasks.task.get", {"taskId": task_id})["task"]["title"])


def test_result_reference_reaches_into_a_nested_result(rest: Rest) -> None:
    result = _batch(rest, {
        "add": "tasks.task.add?fields[TITLE]=Chained",
        "get": "tasks.task.get?taskId=$result[add][task][id]",
    })
    assert result["result_error"] == []
    added = result["result"]["add"]["task"]
    assert result["result"]["get"]["task"]["id"] == added["id"]
    assert result["result"]["get"]["task"]["title"] == "Chained"


def test_a_chain_of_last_id_references_pages_through_every_task(rest: Rest) -> None:
    """The moving-ID chain b24pysdk's fast list sends: each command starts after the last ID of
    the command before it, ``filter[>ID]=$result[n][tasks][49][id]``."""
    ids = _add_tasks(rest, 120)
    first = rest.post("tasks.task.list", {"order": {"ID": "ASC"}, "select": ["ID"], "start": -1}).json()
    seen = [int(t["id"]) for t in first["result"]["tasks"]]
    page_after = "tasks.task.list?order[ID]=ASC&select[0]=ID&start=-1&filter[%3EID]="
    cmd = {"1": f"{page_after}{seen[-1]}"}
    for n in range(2, 51):
        cmd[str(n)] = f"{page_after}$result[{n - 1}][tasks][49][id]"
    result = _batch(rest, cmd)
    assert result["result_error"] == []
    for n in range(1, 51):
        page = result["result"][str(n)]["tasks"]
        seen += [int(t["id"]) for t in page]
        if len(page) < 50:
            break
    assert seen == ids


def test_embedded_references_become_their_string_form(rest: Rest) -> None:
    _add_tasks(rest, 51)
    result = _batch(rest, {
        "list": "tasks.task.list?select[0]=ID",
        "bad": "tasks.task.get",
        "del": "tasks.task.delete?taskId=$result[list][tasks][0][id]",
        "note": "tasks.task.add?fields[TITLE]=next $next[list] total $total[list] error $error[bad][error] "
                "deleted $result[del][task] took $time[list][duration]",
    })
    assert result["result_error"]["bad"]["error"] == "100"
    title = _title(rest, int(result["result"]["note"]["task"]["id"]))
    words = title.split()
    assert words[:9] == ["next", "50", "total", "51", "error", "100", "deleted", "1", "took"]
    assert float(words[9]) >= 0


def test_a_walk_stops_at_the_first_step_that_is_not_there(rest: Rest) -> None:
    result = _batch(rest, {
        "first": "tasks.task.add?fields[TITLE]=Sign",
        # [99] is past the end of the string "Sign": the walk keeps what it has.
        "second": "tasks.task.add?fields[TITLE]=re:$result[first][task][title][99]",
        # A name in other case matches the pattern but names no section: it becomes empty.
        "third": "tasks.task.add?fields[TITLE]=x$RESULT[first][task][id]",
    })
    assert _title(rest, int(result["result"]["second"]["task"]["id"])) == "re:Sign"
    assert _title(rest, int(result["result"]["third"]["task"]["id"])) == "x"


def test_an_array_inside_a_longer_value_kills_the_batch_after_earlier_commands_ran(
    rest: Rest, sim: RunningSimulator
) -> None:
    response = rest.post("batch", {"cmd": {
        "first": "tasks.task.add?fields[TITLE]=Kept",
        "second": "tasks.task.add?fields[TITLE]=about $result[first][task]",
    }})
    assert response.status_code == 500
    assert response.json()["error"] == "INTERNAL_SERVER_ERROR"
    titles = [t["title"] for t in rest.call("tasks.task.list")["tasks"]]
    assert titles == ["Kept"]


@pytest.mark.parametrize("halt", ["1", "N", "false", "2", " 0", True, 1, [0]])
def test_halt_is_true_the_way_php_casts_it(rest: Rest, halt: Any) -> None:
    result = _batch(rest, {"a": "user.get?ID=1", "b": "no.such.method", "c": "user.get?ID=503"}, halt=halt)
    assert list(result["result"]) == ["a"]


@pytest.mark.parametrize("halt", ["0", "", 0, False, None, []])
def test_halt_is_false_the_way_php_casts_it(rest: Rest, halt: Any) -> None:
    result = _batch(rest, {"a": "user.get?ID=1", "b": "no.such.method", "c": "user.get?ID=503"}, halt=halt)
    assert list(result["result"]) == ["a", "c"]


def test_halt_sent_as_a_form_field_N_halts(rest: Rest) -> None:
    response = rest.http.post("batch", data={"halt": "N", "cmd[a]": "no.such.method", "cmd[b]": "user.get?ID=1"})
    assert response.json()["result"]["result"] == []


def test_a_failed_command_leaves_an_error_and_no_time(rest: Rest) -> None:
    result = _batch(rest, {"ok": "user.get?ID=1", "bad": "tasks.task.result.list?taskId=999999"})
    assert list(result["result_error"]) == ["bad"]
    assert list(result["result_time"]) == ["ok"]
    only_failures = _batch(rest, {"bad": "no.such.method", "worse": "tasks.task.get"})
    assert only_failures["result_time"] == []
    assert only_failures["result"] == []


def test_a_command_that_is_not_a_string_is_skipped_without_an_error(rest: Rest) -> None:
    result = _batch(rest, {"odd": 5, "me": "user.get?ID=1"})
    assert list(result["result"]) == ["me"] and result["result_error"] == []


def test_an_unencoded_hash_cuts_the_command_like_parse_url(rest: Rest, sim: RunningSimulator) -> None:
    _batch(rest, {"say": "im.message.add?DIALOG_ID=503&MESSAGE=Task #5 done"})
    assert [m["message"] for m in sim.control.messages()] == ["Task"]


def test_a_start_between_page_boundaries_reads_from_the_lower_one(rest: Rest) -> None:
    ids = _add_tasks(rest, 60)
    page = rest.post("tasks.task.list", {"select": ["ID"], "start": 37}).json()
    assert [int(t["id"]) for t in page["result"]["tasks"]] == ids[:50]
    assert (page["total"], page["next"]) == (60, 50)


def test_start_minus_one_answers_neither_total_nor_next(rest: Rest) -> None:
    ids = _add_tasks(rest, 60)
    page = rest.post("tasks.task.list", {"select": ["ID"], "start": -1}).json()
    assert [int(t["id"]) for t in page["result"]["tasks"]] == ids[:50]
    assert "total" not in page and "next" not in page


def test_list_paging_inside_a_batch_reports_next_and_total(rest: Rest) -> None:
    _add_tasks(rest, 60)
    result = _batch(rest, {"p1": "tasks.task.list?start=0", "p2": "tasks.task.list?start=50",
                           "fast": "tasks.task.list?start=-1"})
    assert result["result_next"] == {"p1": 50}
    assert result["result_total"] == {"p1": 60, "p2": 60}


def test_server_time_and_profile_answer_like_a_portal(rest: Rest) -> None:
    assert rest.call("server.time")[10] == "T"
    assert rest.call("profile") == {"ID": "1", "ADMIN": True, "NAME": "Admin", "LAST_NAME": "",
                                    "PERSONAL_GENDER": "", "TIME_ZONE": ""}
