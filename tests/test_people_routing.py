"""People routing end to end (issue 9): the simulator over HTTP as the portal (task people, user.get,
im.notify.system.add with its TAG semantics), a real SMTP sink, real Redis, sync and delivery as the
worker runs them. Who is told, who never is, in which language, once, as one message per sync."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from b24notify.devtools.simulator import RunningSimulator
from b24notify.devtools.smtp_sink import SmtpSink
from b24notify.metrics import decode_counters, total
from b24notify.prefs import PrefsStore
from b24notify.settings import Settings
from b24notify.workers.context import WorkerContext, build_context
from tests.support.hooks import SECRET, HookSink
from tests.support.pipeline import deliver_all, delivery_ids, sync
from tests.support.portal_user import PortalUser

ADMIN, ANNA, BORIS, CHEN = 1, 503, 504, 505


@pytest.fixture
def people_settings(make_settings, simulator: RunningSimulator, sink: SmtpSink):
    def build(**extra: str) -> Settings:
        values = {"b24_webhook_url": simulator.webhook_url, "b24_application_token": simulator.config.application_token,
                  "smtp_url": sink.url, "email_from": "b24notify@example.com", "notify_kinds": "new,closed,edited"}
        values.update(extra)
        return make_settings(**values)
    return build


@pytest.fixture
def contexts(redis: Redis) -> Iterator[list[WorkerContext]]:
    built: list[WorkerContext] = []
    yield built
    for ctx in built:
        ctx.close()


def context_for(settings: Settings, redis: Redis, built: list[WorkerContext]) -> WorkerContext:
    redis.set(f"{settings.b24notify_key_prefix}:portal:{settings.portal}:connected_at",
              (datetime.now(UTC) - timedelta(hours=1)).isoformat())
    ctx = build_context(settings, redis)
    built.append(ctx)
    return ctx


def shown(sim: RunningSimulator, user_id: int) -> list[str]:
    return [str(n["message"]) for n in sim.control.shown_notifications(user_id)]


def history(sim: RunningSimulator) -> list[dict]:
    return sim.control.notification_history()


def mails_to(sink: SmtpSink, address: str) -> list:
    return [m for m in sink.messages if address in str(m["To"])]


def test_creator_and_auditors_get_a_personal_notification_and_a_mail_never_the_author(
        people_settings, redis, contexts, simulator, sink, user: PortalUser):
    ctx = context_for(people_settings(notify_people="creator,auditors,responsible"), redis, contexts)
    task = user.add_task("Sign the contract", responsible=ANNA, created_by=ADMIN, auditors=[BORIS, ADMIN])
    user.comment(task, "Signed, scan attached", as_result=True, author=ANNA)
    assert sync(ctx, task).status == "synced"
    deliver_all(ctx)
    # Admin is creator and auditor: one notification, one mail. Anna wrote the result: nothing.
    assert len(shown(simulator, ADMIN)) == 1 and len(shown(simulator, BORIS)) == 1
    assert shown(simulator, ANNA) == []
    assert "Signed, scan attached" in shown(simulator, ADMIN)[0]
    assert len(mails_to(sink, "admin@example.com")) == 1 and len(mails_to(sink, "boris.ivanov@example.com")) == 1
    assert mails_to(sink, "anna.smith@example.com") == []
    assert simulator.control.messages() == []  # no fixed chat configured
    # The TAG names the recipient: two people's notifications of one change both stay.
    tags = [n["tag"] for n in history(simulator)]
    assert len(set(tags)) == len(tags) == 2
    counters = decode_counters(redis.hgetall(f"{people_settings().b24notify_key_prefix}:metrics"))
    assert total(counters, "b24notify_alerts_skipped", reason="actor") == 2  # Anna: chat and e-mail


def test_the_one_who_completes_the_task_is_not_told_the_author_is(
        people_settings, redis, contexts, simulator, sink, user: PortalUser):
    ctx = context_for(people_settings(notify_people="author,creator"), redis, contexts)
    task = user.add_task("Close me", responsible=ANNA, created_by=ADMIN)
    user.comment(task, "Done", as_result=True, author=ANNA)
    sync(ctx, task)
    deliver_all(ctx)
    before = len(history(simulator))
    user.complete(task, by=ADMIN)  # the creator completes it: the result closes
    assert user.task(task, ["CLOSED_BY"])["closedBy"] == str(ADMIN)
    sync(ctx, task)
    deliver_all(ctx)
    closing = history(simulator)[before:]
    assert [n["user_id"] for n in closing] == [ANNA]  # the author, not the admin who closed it
    assert "closed" in closing[0]["message"].lower()


def test_six_results_closed_by_one_completion_are_one_message_per_person(
        people_settings, redis, contexts, simulator, sink, user: PortalUser):
    ctx = context_for(people_settings(notify_people="creator", notify_chat="chat42"), redis, contexts)
    task = user.add_task("Many results", responsible=ANNA, created_by=ADMIN)
    for number in range(6):
        user.comment(task, f"Part {number}", as_result=True, author=ANNA)
    sync(ctx, task)
    deliver_all(ctx)
    sent_before = (len(history(simulator)), len(simulator.control.messages()), len(sink.messages))
    user.complete(task, by=ANNA)
    sync(ctx, task)
    deliver_all(ctx)
    new_notifications = history(simulator)[sent_before[0]:]
    new_chat = simulator.control.messages()[sent_before[1]:]
    new_mail = sink.messages[sent_before[2]:]
    assert len(new_notifications) == 1 and len(new_chat) == 1 and len(new_mail) == 1
    assert "6 results closed" in new_notifications[0]["message"]
    assert all(f"Part {n}" in new_chat[0]["message"] for n in range(6))
    assert str(new_mail[0]["Subject"]).startswith("6 results closed in task")


def test_inactive_people_and_muted_people_get_nothing_and_preferences_apply_at_once(
        people_settings, redis, contexts, simulator, sink, user: PortalUser):
    settings = people_settings(notify_people="auditors")
    ctx = context_for(settings, redis, contexts)
    simulator.control.update_user(CHEN, active=False)
    PrefsStore(redis, ctx.keys).update(ctx.portal, BORIS, muted=True)
    PrefsStore(redis, ctx.keys).update(ctx.portal, ADMIN, via="email", language="ru")
    task = user.add_task("Watched", responsible=ANNA, created_by=ANNA, auditors=[ADMIN, BORIS, CHEN])
    user.comment(task, "Ready", as_result=True, author=ANNA)
    sync(ctx, task)
    deliver_all(ctx)
    assert history(simulator) == []  # Admin takes e-mail only, Boris is muted, Chen is inactive
    [mail] = sink.messages
    assert str(mail["To"]) == "admin@example.com" and mail["Content-Language"] == "ru"
    assert str(mail["Subject"]).startswith("Новый результат")
    counters = decode_counters(redis.hgetall(f"{settings.b24notify_key_prefix}:metrics"))
    assert total(counters, "b24notify_alerts_skipped", reason="muted") == 2
    assert total(counters, "b24notify_alerts_skipped", reason="inactive") == 2
    # Unmuted: the next sync tells Boris of the next change.
    PrefsStore(redis, ctx.keys).update(ctx.portal, BORIS, muted=False)
    user.comment(task, "Second", as_result=True, author=ANNA)
    sync(ctx, task)
    deliver_all(ctx)
    assert [n["user_id"] for n in history(simulator)] == [BORIS]


def test_a_fixed_chat_route_per_project_and_language_of_the_portal(
        people_settings, redis, contexts, simulator, user: PortalUser, tmp_path):
    config = tmp_path / "b24notify.toml"
    config.write_text('language = "ru"\n\n[[routes]]\ngroups = [12]\nto = ["chat:sg12"]\n\n'
                      '[[routes]]\nkinds = ["closed"]\nto = ["chat:chat7"]\n', encoding="utf-8")
    ctx = context_for(people_settings(b24notify_config=str(config)), redis, contexts)
    in_project = user.add_task("In project", responsible=ANNA, group=12)
    elsewhere = user.add_task("Elsewhere", responsible=ANNA)
    for task in (in_project, elsewhere):
        user.comment(task, "Result", as_result=True, author=ANNA)
        sync(ctx, task)
    deliver_all(ctx)
    [message] = simulator.control.messages()
    assert message["dialog_id"] == "sg12" and message["message"].startswith("[b]Новый результат[/b]")


def test_a_repeated_personal_notification_replaces_itself(
        people_settings, redis, contexts, simulator, user: PortalUser):
    """What the TAG buys (docs/guarantees.md): a delivery sent again after its worker died between
    the portal's answer and our record replaces the notification instead of doubling it."""
    ctx = context_for(people_settings(notify_people="creator"), redis, contexts)
    task = user.add_task("Twice", responsible=ANNA, created_by=ADMIN)
    user.comment(task, "Once", as_result=True, author=ANNA)
    outcome = sync(ctx, task)
    [notice] = [n for n in outcome.notices if n.target.channel == "notify"]
    before = redis.hgetall(ctx.keys.delivery(notice.key))
    deliver_all(ctx)
    # As if the record of the send was lost (a failover to a replica that had the record from
    # before it): the same delivery runs again.
    redis.delete(ctx.keys.delivery(notice.key))
    redis.hset(ctx.keys.delivery(notice.key), mapping=before)
    ctx.deliveries.schedule(notice.key, at=0)
    deliver_all(ctx)
    assert len(history(simulator)) == 2 and len(shown(simulator, ADMIN)) == 1


def test_an_apprise_route_goes_through_the_outbox_retries_and_keeps_its_url_out_of_redis(
        people_settings, redis, contexts, simulator, user: PortalUser, tmp_path):
    hook = HookSink()
    try:
        config = tmp_path / "b24notify.toml"
        config.write_text(f'[[routes]]\nto = ["apprise:{hook.url()}"]\n', encoding="utf-8")
        ctx = context_for(people_settings(b24notify_config=str(config)), redis, contexts)
        task = user.add_task("Hooked", responsible=ANNA)
        user.comment(task, "Shipped", as_result=True, author=ANNA)
        [did] = delivery_ids(sync(ctx, task), "apprise")
        hook.status = 500
        assert deliver_all(ctx) == ["retry"]  # the service refused: retried like any channel
        hook.status = 200
        ctx.deliveries.schedule(did, at=0)  # the retry's time, now
        assert deliver_all(ctx) == ["sent"]
        assert len(hook.posts) == 2 and "Shipped" in hook.posts[-1][1]["message"]
        stored = b" ".join(v for key in redis.scan_iter(match=f"{ctx.keys.prefix}:*")
                           if redis.type(key) == b"hash" for v in redis.hgetall(key).values())
        assert SECRET.encode() not in stored and SECRET not in did
    finally:
        hook.close()
