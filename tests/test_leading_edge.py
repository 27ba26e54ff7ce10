"""The debounce's leading edge (issue 8): Bitrix24 sends an event once the change is readable, so a
lone event is read at once; events inside the window after a read give exactly one more read, at
the window's end; burst mode is unchanged. Real Redis, a controlled clock, and the web endpoint."""

from __future__ import annotations

import time

import pytest
from starlette.testclient import TestClient

from b24notify.dueset import DueSet, DueSetKeys
from b24notify.keys import TASKS
from b24notify.service.app import create_app
from tests.support.clock import Clock
from tests.test_webhook import DOMAIN, TOKEN, event, post_form

DEBOUNCE = 1.0
CAP = 5.0


def note_event(due: DueSet, clock: Clock, member: str = "p|1") -> bool:
    return due.schedule(member, clock.now + DEBOUNCE, debounce_cap=CAP)


def read(due: DueSet) -> list[str]:
    """A dispatcher's claim, and the read it runs (done at once)."""
    claims = due.claim(10, 60)
    for claim in claims:
        due.complete(claim)
    return [c.member for c in claims]


def test_a_lone_event_is_due_at_once(due, clock):
    assert note_event(due, clock) is True
    assert due.next_due_at() == clock.now
    assert read(due) == ["p|1"]


def test_a_lone_event_through_the_webhook_is_due_at_once(make_settings, redis, keys):
    settings = make_settings(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN,
                             b24notify_debounce_seconds=DEBOUNCE)
    with TestClient(create_app(settings)) as client:
        before = time.time()
        assert post_form(client, event(task=7)).status_code == 200
        after = time.time()
    score = redis.zscore(DueSetKeys.of(keys, TASKS).due, f"{DOMAIN}|7")
    assert before <= score <= after


def test_a_second_event_within_the_window_causes_exactly_one_more_read_at_its_end(due, clock):
    start = clock.now
    note_event(due, clock)
    assert read(due) == ["p|1"]  # the leading read, at once
    clock.now = start + 0.3
    assert note_event(due, clock) is True  # after the read: it needs one more
    clock.now = start + 0.6
    assert note_event(due, clock) is False  # folds into that one
    assert due.next_due_at() == start + DEBOUNCE
    clock.now = start + DEBOUNCE - 0.01
    assert read(due) == []
    clock.now = start + DEBOUNCE
    assert read(due) == ["p|1"]
    for step in range(1, 30):  # and nothing after it: no event came since
        clock.now = start + DEBOUNCE + step * 0.2
        assert read(due) == []


def test_an_event_during_the_leading_read_gives_one_more_read_at_the_window_end(due, clock):
    start = clock.now
    note_event(due, clock)
    (claim,) = due.claim(10, 60)  # the leading read is running
    clock.now = start + 0.2
    assert note_event(due, clock) is True  # pending: it may have read before this change
    note_event(due, clock)
    clock.now = start + 0.3
    assert due.complete(claim)
    assert due.next_due_at() == start + DEBOUNCE  # one more, at the window's end
    assert read(due) == []
    clock.now = start + DEBOUNCE
    assert read(due) == ["p|1"]
    clock.now = start + 3 * DEBOUNCE
    assert read(due) == []


def test_no_more_read_when_no_second_event_came(due, clock):
    start = clock.now
    note_event(due, clock)
    assert read(due) == ["p|1"]
    for step in range(1, 20):
        clock.now = start + step * 0.25
        assert read(due) == []
    assert due.counts() == {"due": 0, "leased": 0, "pending": 0}


def test_an_event_after_the_window_closed_is_read_at_once_again(due, clock):
    start = clock.now
    note_event(due, clock)
    assert read(due) == ["p|1"]
    clock.now = start + DEBOUNCE + 0.01
    note_event(due, clock)
    assert read(due) == ["p|1"]


def test_a_read_due_before_the_event_covers_it(due, clock):
    """A run asked for (by reconciliation, now) and not yet made reads after this change: no other."""
    due.schedule("p|1")
    assert note_event(due, clock) is False
    assert read(due) == ["p|1"]
    clock.now += 3
    assert read(due) == []


def test_the_debounce_windows_clean_up_after_themselves(due, clock, redis, keys):
    for task in range(50):
        note_event(due, clock, f"p|{task}")
    assert redis.zcard(keys.window(TASKS)) == 50
    ttl = redis.pttl(keys.window(TASKS))
    assert 0 < ttl <= (DEBOUNCE + 1) * 1000
    clock.now += DEBOUNCE + 0.01
    note_event(due, clock, "p|x")  # each event removes the windows that closed
    assert redis.zrange(keys.window(TASKS), 0, -1) == [b"p|x"]


def test_burst_mode_is_unchanged(make_settings, redis, keys):
    """Past a tenth of the burst threshold the leading edge is off (the first events of a burst would
    each cost a read), and from the threshold on, runs trail by the cap on the 2 s grid, as before."""
    settings = make_settings(b24_webhook_url=f"https://{DOMAIN}/rest/1/code/", b24_application_token=TOKEN,
                             b24notify_debounce_seconds=DEBOUNCE, b24notify_debounce_max_seconds=CAP,
                             b24notify_burst_events_per_second=20)
    with TestClient(create_app(settings)) as client:
        start = time.time()
        for task in range(1, 26):  # 25 events in well under a second: 2 quiet, 17 trailing, 6 burst
            assert post_form(client, event(task=task)).status_code == 200
        elapsed = time.time() - start
    if elapsed >= 0.9:
        pytest.skip(f"the machine took {elapsed:.2f} s for 25 events: not one second's burst")
    due_set = DueSetKeys.of(keys, TASKS)
    scores = {int(m.decode().split("|")[1]): s - start for m, s in redis.zrange(due_set.due, 0, -1, withscores=True)}
    assert all(scores[t] <= elapsed for t in (1, 2))  # the fleet was quiet: read at once
    assert all(0.9 < scores[t] < DEBOUNCE + elapsed for t in range(3, 20))  # the ordinary trailing debounce
    for task in range(20, 26):  # a burst: the cap, on the grid
        due_at = scores[task] + start
        assert CAP <= scores[task] <= CAP + 2 + elapsed and due_at == int(due_at) and int(due_at) % 2 == 0
