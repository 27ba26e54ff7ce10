"""The coalescing and lease rules, against a real Redis, with a controlled clock."""


from b24notify.dueset import DueSet
from b24notify.keys import TASKS


def test_burst_inside_debounce_window_becomes_one_run(due, clock):
    assert due.schedule("p|1", clock.now + 1) is True
    for _ in range(20):
        assert due.schedule("p|1", clock.now + 1) is False
    clock.now += 1
    claims = due.claim(10, 60)
    assert [c.member for c in claims] == ["p|1"]
    assert due.claim(10, 60) == []


def test_nothing_is_claimed_before_it_is_due(due, clock):
    due.schedule("p|1", clock.now + 5)
    assert due.claim(10, 60) == []
    clock.now += 5
    assert len(due.claim(10, 60)) == 1


def test_event_during_a_run_causes_exactly_one_more_run(due, clock):
    due.schedule("p|1", clock.now)
    (claim,) = due.claim(10, 60)
    for _ in range(5):
        due.schedule("p|1", clock.now + 1)  # events while the task is being processed
    assert due.claim(10, 60) == []  # never two workers on one task
    clock.now += 2
    assert due.claim(10, 60) == []  # still running: the pending mark waits
    assert due.complete(claim) is True
    (again,) = due.claim(10, 60)
    assert again.member == "p|1"
    assert due.complete(again) is True
    assert due.claim(10, 60) == []
    assert due.counts() == {"due": 0, "leased": 0, "pending": 0}


def test_expired_lease_is_reaped_and_the_old_holder_is_fenced_off(due, clock):
    due.schedule("p|1", clock.now)
    (old,) = due.claim(10, 30)
    clock.now += 31
    assert due.reap() == ["p|1"]
    (new,) = due.claim(10, 30)
    assert new.token != old.token
    assert due.holds(new) and not due.holds(old)
    assert due.complete(old) is False  # the dead worker's late write changes nothing
    assert due.counts()["leased"] == 1
    assert due.complete(new) is True


def test_retry_puts_the_member_back_at_the_given_time(due, clock):
    due.schedule("p|1", clock.now)
    (claim,) = due.claim(10, 60)
    assert due.retry(claim, clock.now + 30)
    clock.now += 29
    assert due.claim(10, 60) == []
    clock.now += 1
    assert len(due.claim(10, 60)) == 1


def test_retry_with_pending_event_waits_for_the_later_time(due, clock):
    due.schedule("p|1", clock.now)
    (claim,) = due.claim(10, 60)
    due.schedule("p|1", clock.now + 1)
    due.retry(claim, clock.now + 30)
    clock.now += 10
    assert due.claim(10, 60) == []
    clock.now += 20
    assert len(due.claim(10, 60)) == 1


def test_claim_only_one_member(due, clock):
    due.schedule("p|1", clock.now)
    due.schedule("p|2", clock.now)
    (claim,) = due.claim(10, 60, only="p|2")
    assert claim.member == "p|2"
    assert [c.member for c in due.claim(10, 60)] == ["p|1"]


def test_claims_are_exclusive_across_many_claimers(due, clock):
    for i in range(100):
        due.schedule(f"p|{i}", clock.now)
    seen = []
    while batch := due.claim(7, 60):
        seen.extend(c.member for c in batch)
    assert sorted(seen) == sorted(f"p|{i}" for i in range(100))


def test_a_task_that_keeps_changing_is_read_once_per_debounce_window(due, clock):
    # (Was the trailing-only rule: every event pushed the run back, up to the 5 s cap. Since the
    # leading edge, a quiet fleet reads at once and then once per window; the trailing rule still
    # holds between a tenth of the burst threshold and the threshold, tests/test_webhook.py.)
    start, reads = clock.now, []
    for step in range(11):  # an event every 0.4 s for 4 s; a dispatcher claims right after each
        clock.now = start + step * 0.4
        due.schedule("p|1", clock.now + 1, debounce_cap=5)
        for claim in due.claim(10, 60):
            reads.append(round(clock.now - start, 1))
            due.complete(claim)  # the read takes no time here
    assert reads == [0.0, 1.2, 2.0, 3.2, 4.0]  # at once, then one read per 1 s window (on the 0.4 s grid)


def test_an_event_pulls_in_a_far_retry_to_within_the_cap(due, clock):
    due.schedule("p|1", clock.now)
    (claim,) = due.claim(10, 60)
    due.retry(claim, clock.now + 300)
    due.schedule("p|1", clock.now + 1, debounce_cap=5)
    assert due.next_due_at() == clock.now + 5


def test_gather_takes_members_due_soon_once_one_is_due(due, clock):
    due.schedule("p|1", clock.now)
    due.schedule("p|2", clock.now + 0.2)
    due.schedule("p|3", clock.now + 2)
    assert [c.member for c in due.claim(10, 60, gather=0.3)] == ["p|1", "p|2"]
    clock.now += 1.8
    assert due.claim(10, 60, gather=0.3) == []  # nothing due yet: gathering needs a trigger


def test_renew_extends_held_leases_and_drops_lost_ones(due, clock):
    due.schedule("p|1", clock.now)
    due.schedule("p|2", clock.now)
    first, second = due.claim(10, 10)
    clock.now += 11
    due.reap()  # both expired; p|2 is claimed again by someone else
    (other,) = due.claim(1, 10, only="p|2")
    assert due.renew([first, second], 60) == []  # the old job starts late: both claims are gone
    (mine,) = due.claim(1, 10, only="p|1")
    assert due.renew([mine, other], 60) == [mine, other]
    clock.now += 30
    assert due.reap() == []  # renewed to 60 s


def test_reaped_claim_counts_as_an_attempt(due, clock):
    due.schedule("p|1", clock.now)
    assert len(due.claim(10, 30)) == 1  # ... and the job dies
    clock.now += 31
    assert due.reap() == ["p|1"]
    assert due.strikes(["p|1", "p|2"]) == {"p|1": 1}
    (again,) = due.claim(10, 30)
    assert due.complete(again) is True
    assert due.strikes(["p|1"]) == {}  # a clean run clears them


def test_a_batch_that_died_twice_is_claimed_one_by_one(due, clock):
    for i in (1, 2, 3):
        due.schedule(f"p|{i}", clock.now)
    for _ in range(2):
        assert len(due.claim(10, 30)) == 3  # the first death may be a deploy: together again
        clock.now += 31
        due.reap()
    alone = [[c.member for c in due.claim(10, 30)] for _ in range(4)]
    assert alone == [["p|1"], ["p|2"], ["p|3"], []]


def test_a_suspect_behind_healthy_members_waits_for_a_claim_of_its_own(due, clock):
    due.schedule("p|1", clock.now)
    (claim,) = due.claim(10, 30)
    due.retry(claim, clock.now)
    due.strike("p|1")
    due.strike("p|1")
    due.schedule("p|0", clock.now - 1)
    due.schedule("p|2", clock.now)
    assert [c.member for c in due.claim(10, 30)] == ["p|0", "p|2"]
    assert [c.member for c in due.claim(10, 30)] == ["p|1"]


def test_a_parked_member_leaves_the_due_set_until_asked_again(due, clock):
    due.schedule("p|1", clock.now)
    (claim,) = due.claim(10, 30)
    assert due.park(claim, "TypeError: boom", "error", strikes=8, keep_strikes=7)
    assert due.counts() == {"due": 0, "leased": 0, "pending": 0}
    (parked,) = due.parked()
    assert (parked.member, parked.reason, parked.cause, parked.at) == ("p|1", "TypeError: boom", "error", clock.now)
    assert due.strikes(["p|1"]) == {"p|1": 7}  # one more failure parks it again
    assert due.unpark("p|1", keep_strikes=7) is True  # the operator's "try again"
    (again,) = due.claim(10, 30)
    assert due.complete(again)
    assert due.parked() == [] and due.strikes(["p|1"]) == {}
    assert due.unpark("p|1", keep_strikes=7) is False


def test_a_parked_member_nobody_brings_back_is_forgotten_after_the_keep_window(redis, keys):
    """Parked records have an owner that removes them: a task deleted (or never changed again)
    after it was parked must not stay in Redis for good."""
    from b24notify.workers.upkeep import Upkeep

    now = [1_000_000.0]
    tasks = DueSet(redis, keys, TASKS, clock=lambda: now[0])
    for member in ("p|1", "p|2"):
        tasks.schedule(member, at=0)
        (claim,) = tasks.claim(1, 60, only=member)
        tasks.strike(member)
        assert tasks.park(claim, "boom", "error", strikes=1, keep_strikes=0)
        now[0] += 10 * 86400  # p|2 is parked ten days after p|1
    upkeep = Upkeep(redis, keys, parked_keep_seconds=15 * 86400, wall=lambda: now[0])
    assert upkeep.run()["parked"] == 1  # p|1 is 20 days old, p|2 10
    assert [p.member for p in tasks.parked()] == ["p|2"]
    assert not redis.hexists(keys.strikes(TASKS), "p|1")
