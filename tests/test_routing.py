"""Routing (issue 9): who gets which change, on which channel, in which language — the pure core
(routing/recipients.py) and the configuration contract (routes in B24NOTIFY_CONFIG, NOTIFY_PEOPLE,
NOTIFY_LANGUAGE), including one clear line per configuration mistake."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from b24notify.alerts import Alert, sample_alert
from b24notify.diff import ChangeKind
from b24notify.notices import Notice, Target, apprise_id
from b24notify.people import Person, parse_user
from b24notify.portals.spec import require_channels, webhook_portals
from b24notify.prefs import Prefs
from b24notify.routing.recipients import people_needed, route
from b24notify.routing.rules import Route, make_route
from b24notify.settings import ConfigError
from b24notify.task_info import TaskInfo

CREATOR, RESPONSIBLE, AUDITOR, ACCOMPLICE, AUTHOR, CLOSER = 1, 503, 7, 8, 503, 9
TASK = TaskInfo(id=8017, title="Sign the contract", responsible_id=RESPONSIBLE, group_id=12, status=3,
                created_by=CREATOR, accomplices=(ACCOMPLICE,), auditors=(AUDITOR, CREATOR), closed_by=0)
PEOPLE = {uid: Person(uid, f"Person {uid}", f"p{uid}@example.com") for uid in (1, 503, 7, 8, 9, 10)}


def alert(kind: ChangeKind = ChangeKind.NEW, result_id: int = 23, author: int = AUTHOR) -> Alert:
    base = sample_alert(kind)
    result = replace(base.result, id=result_id, created_by=author)
    return replace(base, task=TASK, result=result, change_key=f"{result_id}:{kind.value}")


def run(alerts: list[Alert], routes: list[Route], *, task: TaskInfo = TASK, people: dict[int, Person] | None = None,
        prefs: dict[int, Prefs] | None = None, language: str = "en", via: tuple[str, ...] = ("chat",),
        kinds: tuple[str, ...] = ("new", "closed")) -> list[Notice]:
    return route(alerts, task=task, routes=routes, people=PEOPLE if people is None else people, prefs=prefs or {},
                 language=language, default_kinds=kinds, default_via=via).notices


def reached(notices: list[Notice]) -> set[str]:
    return {n.target.key for n in notices}


@pytest.mark.parametrize(("role", "expected"), [
    ("creator", {"notify:u1"}),
    ("responsible", set()),  # the responsible person pinned the result: the actor, never told
    ("accomplices", {"notify:u8"}),
    ("auditors", {"notify:u7", "notify:u1"}),
    ("author", set()),  # the author of a new result caused it
])
def test_each_role_reaches_its_people_but_never_the_actor(role, expected):
    assert reached(run([alert()], [make_route([role])])) == expected


def test_the_author_is_told_when_someone_else_closes_their_result():
    closed = alert(ChangeKind.CLOSED)
    task = replace(TASK, closed_by=CLOSER)
    assert reached(run([closed], [make_route(["author", "responsible"])], task=task)) == {"notify:u503"}
    # The one who completed the task is not told of the results it closed.
    assert reached(run([closed], [make_route(["creator"])], task=replace(TASK, closed_by=CREATOR))) == set()


def test_a_person_reached_by_several_routes_and_roles_gets_each_change_once_per_channel():
    routes = [make_route(["creator", "auditors"]), make_route(["auditors"], via=["chat", "email"]),
              make_route(["email:p1@example.com"])]
    notices = run([alert()], routes)
    keys = sorted(n.target.key for n in notices)
    assert keys == ["email:u1", "email:u7", "notify:u1", "notify:u7"]
    # p1@example.com is the creator's address: reached as a person and as a fixed target, mailed once.
    assert all(len(n.alerts) == 1 for n in notices)


def test_inactive_people_and_people_without_an_address_are_skipped_and_counted():
    people = {**PEOPLE, AUDITOR: Person(AUDITOR, "Gone", "g@example.com", active=False),
              ACCOMPLICE: Person(ACCOMPLICE, "No Mail", "")}
    result = route([alert()], task=TASK, routes=[make_route(["auditors", "accomplices"], via=["email"])],
                   people=people, prefs={}, language="en", default_kinds=("new",), default_via=("chat",))
    assert reached(result.notices) == {"email:u1"}
    assert result.skipped == {"inactive": 1, "no_email": 1}
    assert result.without_email == {ACCOMPLICE}


def test_a_user_the_portal_does_not_return_counts_as_inactive():
    assert parse_user(42, []) == Person(42, "user 42", "", active=False)
    assert parse_user(5, [{"ID": "5", "NAME": "Anna", "LAST_NAME": "Smith", "EMAIL": "a@x.example",
                           "ACTIVE": True}]) == Person(5, "Anna Smith", "a@x.example", True)
    assert not parse_user(5, [{"ID": "5", "ACTIVE": False}]).active


def test_mute_kinds_and_channels_from_preferences():
    routes = [make_route(["creator", "auditors", "accomplices"], via=["chat", "email"])]
    prefs = {CREATOR: Prefs(muted=True), AUDITOR: Prefs(kinds=frozenset({"closed"})),
             ACCOMPLICE: Prefs(via=frozenset({"email"}))}
    result = route([alert()], task=TASK, routes=routes, people=PEOPLE, prefs=prefs, language="en",
                   default_kinds=("new", "closed"), default_via=("chat",))
    assert reached(result.notices) == {"email:u8"}
    assert result.skipped == {"muted": 2, "kind": 2, "channel": 1}


def test_one_sync_gives_each_recipient_one_digest_in_their_language():
    closed = [alert(ChangeKind.CLOSED, result_id=r, author=10) for r in (21, 22, 23, 24, 25, 26)]
    routes = [make_route(["creator", "author"]), make_route(["chat:sg12"])]
    notices = run(closed, routes, prefs={CREATOR: Prefs(language="ru")}, language="en")
    by_target = {n.target.key: n for n in notices}
    assert set(by_target) == {"notify:u1", "notify:u10", "chat:sg12"}
    assert all([a.result.id for a in n.alerts] == [21, 22, 23, 24, 25, 26] for n in notices)
    assert by_target["notify:u1"].language == "ru" and by_target["chat:sg12"].language == "en"
    # Same changes, another recipient: another key; the same sync run again: the same keys.
    assert len({n.key for n in notices}) == 3
    assert {n.key for n in run(closed, routes, prefs={CREATOR: Prefs(language="ru")})} == {n.key for n in notices}


def test_kinds_and_groups_narrow_a_route():
    routes = [make_route(["chat:chat1"], kinds=["closed"]), make_route(["chat:sg12"], groups=[12]),
              make_route(["chat:sg99"], groups=[99])]
    assert reached(run([alert(ChangeKind.NEW)], routes)) == {"chat:sg12"}
    assert reached(run([alert(ChangeKind.CLOSED)], routes)) == {"chat:chat1", "chat:sg12"}
    # NOTIFY_KINDS is the default of a route that names none.
    assert reached(run([alert(ChangeKind.EDITED)], [make_route(["chat:chat1"])], kinds=("new",))) == set()


def test_only_the_people_the_routes_name_are_looked_up():
    assert people_needed([make_route(["chat:chat1"])], TASK, [AUTHOR]) == set()
    assert people_needed([make_route(["creator", "auditors"])], TASK, [AUTHOR]) == {CREATOR, AUDITOR}
    assert people_needed([make_route(["author"])], TASK, [AUTHOR, 0]) == {AUTHOR}


def test_an_apprise_url_never_leaves_the_route():
    url = "tgram://123456:SECRET-TOKEN/98765"
    rule = make_route([f"apprise:{url}"])
    [notice] = run([alert()], [rule])
    assert notice.target == Target("apprise", apprise_id(url))
    assert "SECRET" not in notice.to_json() and "SECRET" not in notice.key and rule.apprise_urls == {
        apprise_id(url): url}
    with pytest.raises(ValueError) as caught:
        make_route(["apprise:not a url SECRET"])
    assert "SECRET" not in str(caught.value)


# -- the configuration contract -------------------------------------------------------------------

def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "b24notify.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_routes_and_language_from_the_file_and_the_environment(make_settings, tmp_path):
    path = write(tmp_path, """
language = "ru"

[[routes]]
kinds  = ["new", "closed"]
groups = [12]
to     = ["creator", "auditors", "chat:sg12"]
via    = ["chat", "email"]

[[portals]]
webhook_url = "https://b.example/rest/1/code/"
application_token = "tb"
language = "en"

[[portals.routes]]
to = ["email:ops@b.example"]
""")
    settings = make_settings(b24notify_config=str(path), b24_webhook_url="https://a.example/rest/1/code/",
                             b24_application_token="ta", notify_people="responsible",
                             smtp_url="smtp://127.0.0.1:25", email_from="n@x.example")
    require_channels(settings)
    a, b = webhook_portals(settings)
    assert a.language == "ru" and b.language == "en"
    assert [(r.roles, r.targets, r.groups, r.via) for r in a.routes] == [
        (("creator", "auditors"), (Target("chat", "sg12"),), frozenset({12}), ("chat", "email")),
        (("responsible",), (), None, None)]
    assert [r.targets for r in b.routes] == [(Target("email", "ops@b.example"),), ()]
    assert a.default_via == ("chat", "email")  # e-mail is configured: people get both by default


def test_notify_chat_and_email_become_routes(make_settings):
    settings = make_settings(b24_webhook_url="https://a.example/rest/1/code/", b24_application_token="t",
                             notify_chat="chat5", notify_email="a@x.example,b@x.example",
                             smtp_url="smtp://127.0.0.1:25", email_from="n@x.example")
    [spec] = webhook_portals(settings)
    assert [t.key for r in spec.routes for t in r.targets] == ["chat:chat5", "email:a@x.example",
                                                               "email:b@x.example"]
    assert spec.default_via == ("chat", "email")


def test_no_route_at_all_is_one_line_saying_what_to_set(make_settings):
    settings = make_settings(b24_webhook_url="https://a.example/rest/1/code/", b24_application_token="t")
    with pytest.raises(ConfigError, match=r"^NOTIFY_CHAT / NOTIFY_EMAIL / NOTIFY_PEOPLE: set at least one"):
        require_channels(settings)


def test_an_e_mail_route_needs_smtp(make_settings, tmp_path):
    path = write(tmp_path, "[[routes]]\nto = ['creator']\nvia = ['email']\n")
    settings = make_settings(b24notify_config=str(path), b24_webhook_url="https://a.example/rest/1/code/",
                             b24_application_token="t")
    with pytest.raises(ConfigError, match=r"^SMTP_URL: is required"):
        require_channels(settings)


@pytest.mark.parametrize(("text", "expected"), [
    ("[[routes]]\nto = ['boss']\n", "line 1: routes[0]: to[0]: 'boss' is neither a role"),
    ("[[routes]]\nto = ['creator']\n\n[[routes]]\nto = ['chat:general']\n",
     "line 4: routes[1]: to[0]: chat:general is not a DIALOG_ID"),
    ("[[routes]]\nto = ['creator', 'email:not-an-address']\n", "routes[0]: to[1]: email:not-an-address is not an"),
    ("[[routes]]\nto = ['creator']\nvia = ['pigeon']\n", "routes[0]: via[0]: 'pigeon' is not one of chat, email"),
    ("[[routes]]\nto = ['creator']\nkinds = ['deleted']\n", "routes[0]: kinds[0]: 'deleted' is not one of"),
    ("[[routes]]\nto = []\n", "routes[0]: to: needs at least one"),
    ("[[routes]]\nto = ['creator']\ncolour = 'red'\n", "routes[0].colour: Extra inputs are not permitted"),
    ("language = 'de'\n", "language: must be one of en, ru"),
    ("[[portals]]\nwebhook_url = 'https://b.example/rest/1/c/'\napplication_token = 't'\n\n"
     "[[portals.routes]]\nto = ['creator']\n\n[[portals.routes]]\nto = ['nobody']\n",
     "line 8: portals[0].routes[1]: to[0]: 'nobody' is neither a role"),
])
def test_each_bad_route_is_one_line_with_its_index(make_settings, tmp_path, text, expected):
    settings = make_settings(b24notify_config=str(write(tmp_path, text)),
                             b24_webhook_url="https://a.example/rest/1/code/", b24_application_token="t")
    with pytest.raises(ConfigError) as caught:
        require_channels(settings)
    message = str(caught.value)
    assert message.startswith("B24NOTIFY_CONFIG: ") and "\n" not in message
    assert expected in message


def test_bad_environment_shortcuts(make_settings):
    with pytest.raises(ConfigError, match=r"^NOTIFY_PEOPLE: 'boss' is not one of creator"):
        make_settings(notify_people="creator,boss")
    with pytest.raises(ConfigError, match=r"^NOTIFY_LANGUAGE: must be one of en, ru"):
        make_settings(notify_language="fr")
