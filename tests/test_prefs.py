"""Per-person preferences (issue 9): what a person is told, on which channels, in which language;
kept in Redis per portal, set and listed by an operator with `b24notify prefs`, read by every sync
in one round trip. A stored value nobody can read never breaks a sync."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import Redis

from b24notify.cli import main
from b24notify.diff import ChangeKind
from b24notify.keys import Keys
from b24notify.portals.registry import AppInstall, AppRegistry
from b24notify.prefs import KINDS, VIA, Prefs, PrefsStore, PrefsUpdate, parse_user_id, read_prefs, table

PORTAL = "acme.example"
SECRET = "s3cretcode"
WEBHOOK_URL = f"https://{PORTAL}/rest/1/{SECRET}/"


# -- the pure part ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prefs", [
    Prefs(),
    Prefs(muted=True),
    Prefs(kinds=frozenset({"closed", "new"})),
    Prefs(via=frozenset({"email"})),
    Prefs(language="ru"),
    Prefs(muted=True, kinds=frozenset(KINDS), via=frozenset(VIA), language="en"),
])
def test_preferences_survive_the_json_round_trip(prefs):
    text = prefs.to_json()
    assert Prefs.from_json(text) == prefs
    assert Prefs.from_json(text.encode()) == prefs  # Redis answers bytes
    assert read_prefs(text)[1] == ()


def test_the_stored_form_is_stable_and_in_the_kinds_order():
    text = Prefs(kinds=frozenset({"edited", "new"}), via=frozenset({"email", "chat"})).to_json()
    assert json.loads(text) == {"muted": False, "kinds": ["new", "edited"], "via": ["chat", "email"],
                                "language": None}


@pytest.mark.parametrize(("prefs", "kind", "channel", "reason"), [
    (Prefs(), "new", "notify", None),
    (Prefs(), "removed", "email", None),
    (Prefs(muted=True), "new", "notify", "muted"),
    (Prefs(muted=True, kinds=frozenset({"closed"})), "new", "email", "muted"),  # muted says it first
    (Prefs(kinds=frozenset({"closed"})), "new", "notify", "kind"),
    (Prefs(kinds=frozenset({"closed"})), "closed", "notify", None),
    (Prefs(kinds=frozenset({"closed"})), ChangeKind.CLOSED, "email", None),  # the diff's own kinds
    (Prefs(kinds=frozenset({"closed"}), via=frozenset({"email"})), "new", "notify", "kind"),
    (Prefs(via=frozenset({"email"})), "new", "notify", "channel"),
    (Prefs(via=frozenset({"email"})), "new", "email", None),
    (Prefs(via=frozenset({"chat"})), "new", "notify", None),  # a personal notification is "chat" in via
    (Prefs(via=frozenset({"chat"})), "new", "chat", None),
    (Prefs(via=frozenset({"chat"})), "new", "email", "channel"),
    (Prefs(via=frozenset({"chat", "email"})), "new", "apprise", "channel"),  # not a person's channel
    (Prefs(), "new", "apprise", None),
    (Prefs(language="ru"), "edited", "email", None),  # the language decides nothing
])
def test_decide_says_why_an_alert_is_skipped(prefs, kind, channel, reason):
    assert prefs.decide(kind, channel) == reason


@pytest.mark.parametrize(("raw", "expected"), [
    ("", Prefs()),
    ("{not json", Prefs()),
    (b"\xff\xfe", Prefs()),
    ("[1, 2]", Prefs()),
    ('"muted"', Prefs()),
    ("null", Prefs()),
    ('{"muted": "yes"}', Prefs()),
    ('{"muted": true, "language": "de"}', Prefs(muted=True)),  # the readable fields are kept
    ('{"muted": true, "kinds": "new"}', Prefs(muted=True)),
    ('{"kinds": ["new", "reopened"]}', Prefs(kinds=frozenset({"new"}))),  # a kind of a newer version
    ('{"kinds": []}', Prefs()),  # never "no kind at all": every kind
    ('{"kinds": ["reopened"]}', Prefs()),
    ('{"via": [1, "email"]}', Prefs()),
    ('{"via": ["sms"], "language": "ru"}', Prefs(language="ru")),
    ('{"language": 7}', Prefs()),
])
def test_a_bad_stored_value_falls_back_to_the_defaults_field_by_field(raw, expected):
    prefs, problems = read_prefs(raw)
    assert prefs == expected
    assert problems  # and says what it could not read


def test_unknown_keys_are_ignored():
    raw = '{"muted": true, "digest": "hourly", "v": 3}'
    assert read_prefs(raw) == (Prefs(muted=True), ())


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
FIELDS = st.fixed_dictionaries({}, optional={
    "muted": JSON, "kinds": JSON | st.lists(st.sampled_from([*KINDS, "x", ""]), max_size=5),
    "via": JSON | st.lists(st.sampled_from([*VIA, "sms"]), max_size=3),
    "language": JSON | st.sampled_from(["en", "ru"]),
})


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, FIELDS).map(json.dumps) | st.binary(max_size=40))
def test_no_stored_value_makes_reading_raise(raw):
    prefs = Prefs.from_json(raw)
    assert Prefs.from_json(prefs.to_json()) == prefs  # and what it gives is a valid Prefs


@pytest.mark.parametrize(("change", "message"), [
    ({"kinds": "new,opened"}, "kinds: 'opened' is not known"),
    ({"kinds": ""}, "kinds: empty"),
    ({"kinds": " , "}, "kinds: empty"),
    ({"kinds": []}, "kinds: empty"),
    ({"kinds": "all,new"}, "kinds: all cannot be combined"),
    ({"via": "sms"}, "via: 'sms' is not known"),
    ({"via": "notify"}, "via: 'notify' is not known"),  # the preference says chat
    ({"language": "de"}, "language: 'de' is not known"),
    ({"language": ""}, "language: '' is not known"),
    ({"muted": "yes"}, "muted: must be true or false"),
])
def test_bad_values_are_refused_with_what_is_wrong(change, message):
    with pytest.raises(ValueError, match=message):
        PrefsUpdate.parse(**change)


@pytest.mark.parametrize("value", ["0", "-3", "abc", "1.5", "", " ", "٣", 0, -1, True])
def test_a_user_id_is_a_positive_integer(value):
    with pytest.raises(ValueError, match="not a user id"):
        parse_user_id(value)


def test_user_ids_are_read_from_text_or_numbers():
    assert parse_user_id("7") == parse_user_id(" 7 ") == parse_user_id(7) == 7


def test_values_are_read_case_insensitively_and_all_or_default_reset():
    change = PrefsUpdate.parse(kinds="New, CLOSED", via=["Email"], language="RU")
    assert change.apply(Prefs()) == Prefs(kinds=frozenset({"new", "closed"}), via=frozenset({"email"}),
                                           language="ru")
    reset = PrefsUpdate.parse(kinds="all", via="ALL", language="default")
    assert reset.apply(Prefs(muted=True, kinds=frozenset({"new"}), via=frozenset({"chat"}), language="ru")) \
        == Prefs(muted=True)
    assert PrefsUpdate.parse().empty and not PrefsUpdate.parse(muted=False).empty


def test_prefs_refuse_values_outside_their_vocabulary():
    with pytest.raises(ValueError, match="kinds"):
        Prefs(kinds=frozenset({"reopened"}))
    with pytest.raises(ValueError, match="kinds"):
        Prefs(kinds=frozenset())  # "nothing" is said with muted
    with pytest.raises(ValueError, match="via"):
        Prefs(via=frozenset({"notify"}))
    with pytest.raises(ValueError, match="language"):
        Prefs(language="de")


def test_the_table_shows_the_words_prefs_set_takes():
    assert table({}) == ["(none)"]
    lines = table({12: Prefs(language="ru"), 3: Prefs(muted=True, kinds=frozenset({"closed", "new"}),
                                                       via=frozenset({"email"}))})
    assert [line.split() for line in lines] == [
        ["user", "muted", "kinds", "via", "language"],
        ["3", "yes", "new,closed", "email", "default"],
        ["12", "no", "all", "all", "ru"],
    ]


# -- the store, on the real Redis -------------------------------------------------------------------


@pytest.fixture
def store(redis: Redis, keys: Keys) -> PrefsStore:
    return PrefsStore(redis, keys)


def stored(redis: Redis, keys: Keys, portal: str = PORTAL) -> dict[str, dict[str, object]]:
    return {k.decode(): json.loads(v) for k, v in redis.hgetall(keys.prefs(portal)).items()}


def test_an_update_changes_only_the_fields_it_names(store, redis, keys):
    assert store.update(PORTAL, 7, muted=True) == Prefs(muted=True)
    assert store.update(PORTAL, 7, kinds="closed") == Prefs(muted=True, kinds=frozenset({"closed"}))
    assert store.update(PORTAL, 7, via=["email"], language="ru") == Prefs(
        muted=True, kinds=frozenset({"closed"}), via=frozenset({"email"}), language="ru")
    assert store.update(PORTAL, 7, muted=False, kinds="all") == Prefs(via=frozenset({"email"}), language="ru")
    assert store.get(PORTAL, 7) == Prefs(via=frozenset({"email"}), language="ru")
    assert stored(redis, keys) == {"7": {"muted": False, "kinds": None, "via": ["email"], "language": "ru"}}


def test_preferences_are_per_portal_and_per_person(store):
    store.update(PORTAL, 7, muted=True)
    store.update("other.example:8443", 7, language="ru")
    store.update(PORTAL, 8, kinds=["new"])
    assert store.all(PORTAL) == {7: Prefs(muted=True), 8: Prefs(kinds=frozenset({"new"}))}
    assert store.all("other.example:8443") == {7: Prefs(language="ru")}
    assert store.all("nobody.example") == {}


def test_back_to_all_defaults_leaves_nothing_stored(store, redis, keys):
    store.update(PORTAL, 7, muted=True, language="en")
    assert store.update(PORTAL, 7, muted=False, language="default") == Prefs()
    assert not redis.exists(keys.prefs(PORTAL))
    store.update(PORTAL, 7, via="chat")
    assert store.clear(PORTAL, 7) is True
    assert store.clear(PORTAL, 7) is False
    assert store.all(PORTAL) == {}


def test_a_bad_update_writes_nothing(store, redis, keys):
    store.update(PORTAL, 7, muted=True)
    before = redis.hgetall(keys.prefs(PORTAL))
    for change in ({"kinds": "new,bogus"}, {"muted": False, "language": "fr"}, {"via": ""}):
        with pytest.raises(ValueError):
            store.update(PORTAL, 7, **change)
    with pytest.raises(ValueError, match="user"):
        store.update(PORTAL, 0, muted=True)
    assert redis.hgetall(keys.prefs(PORTAL)) == before


def test_get_many_gives_everyone_asked_for_with_defaults_for_the_others(store):
    store.update(PORTAL, 3, muted=True)
    store.update(PORTAL, 250, language="ru")
    people = [*range(1, 301), 3, 250]  # repeats are fine
    found = store.get_many(PORTAL, people)
    assert set(found) == set(range(1, 301))
    assert found[3] == Prefs(muted=True) and found[250] == Prefs(language="ru")
    assert all(p == Prefs() for user, p in found.items() if user not in (3, 250))
    assert store.get_many(PORTAL, []) == {}


def test_get_many_is_one_hmget(redis_url, redis, keys):
    """The sync reads everyone's preferences in one round trip: on a connection of its own, the
    store's last command (as the server saw it) is the HMGET itself."""
    own = Redis.from_url(redis_url, single_connection_client=True)
    try:
        connection_id = own.client_id()
        PrefsStore(own, keys).update(PORTAL, 5, muted=True)
        found = PrefsStore(own, keys).get_many(PORTAL, range(1, 51))
        assert found[5] == Prefs(muted=True) and len(found) == 50
        (info,) = redis.client_list(client_id=[connection_id])
        assert info["cmd"] == "hmget"
    finally:
        own.close()


def test_a_bad_stored_value_never_breaks_a_read_and_is_logged_once(store, redis, keys, caplog):
    key = keys.prefs(PORTAL)
    redis.hset(key, mapping={"7": "{broken", "8": json.dumps({"muted": True, "language": "klingon"}),
                             "9": Prefs(kinds=frozenset({"new"})).to_json(), "admin": "{}", b"\xff": "{}",
                             "10": b"\xff\xfe"})
    caplog.set_level(logging.WARNING, logger="b24notify.prefs")
    for _ in range(3):  # three syncs
        found = store.get_many(PORTAL, [7, 8, 9, 10])
        assert found == {7: Prefs(), 8: Prefs(muted=True), 9: Prefs(kinds=frozenset({"new"})), 10: Prefs()}
    assert store.all(PORTAL) == {7: Prefs(), 8: Prefs(muted=True), 9: Prefs(kinds=frozenset({"new"})), 10: Prefs()}
    lines = [r.getMessage() for r in caplog.records if "event=prefs.unreadable" in r.getMessage()]
    assert len(lines) == 5, lines  # users 7, 8 and 10, the fields "admin" and b"\xff": once each
    assert any("user=7" in line and "not JSON" in line for line in lines)
    assert any("user=8" in line and "klingon" in line for line in lines)
    # An update repairs what it could not read and keeps the rest.
    assert store.update(PORTAL, 8, via="email") == Prefs(muted=True, via=frozenset({"email"}))
    assert json.loads(redis.hget(key, "8")) == {"muted": True, "kinds": None, "via": ["email"], "language": None}


# -- the command ------------------------------------------------------------------------------------


@pytest.fixture
def webhook_env(make_settings, monkeypatch, redis_url, key_prefix) -> dict[str, str]:
    """The environment of an operator with one webhook portal (make_settings cleans it first)."""
    make_settings()
    env = {"B24_WEBHOOK_URL": WEBHOOK_URL, "B24_APPLICATION_TOKEN": "app-token", "NOTIFY_CHAT": "chat1",
           "REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": key_prefix}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("B24", "NOTIFY_", "SMTP_", "EMAIL_", "REDIS_URL"))}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "b24notify.cli", *args], env=full, text=True,
                          capture_output=True, timeout=60)


def test_prefs_set_and_list_end_to_end(webhook_env, redis, keys):
    started = time.monotonic()
    first = run_cli(webhook_env, "prefs", "set", "--portal", PORTAL, "--user", "7", "--mute",
                    "--kinds", "new,closed", "--language", "ru")
    assert first.returncode == 0, first.stderr
    assert [line.split() for line in first.stdout.splitlines()] == [
        ["user", "muted", "kinds", "via", "language"], ["7", "yes", "new,closed", "all", "ru"]]
    assert stored(redis, keys) == {"7": {"muted": True, "kinds": ["new", "closed"], "via": None, "language": "ru"}}

    second = run_cli(webhook_env, "prefs", "set", "--portal", PORTAL.upper(), "--user", "12", "--via", "email")
    assert second.returncode == 0, second.stderr
    listing = run_cli(webhook_env, "prefs", "list", "--portal", PORTAL)
    assert listing.returncode == 0, listing.stderr
    assert [line.split() for line in listing.stdout.splitlines()] == [
        ["user", "muted", "kinds", "via", "language"],
        ["7", "yes", "new,closed", "all", "ru"],
        ["12", "no", "all", "email", "default"],
    ]
    # What the command stored is what the sync reads.
    assert PrefsStore(redis, keys).get_many(PORTAL, [7, 12, 13]) == {
        7: Prefs(muted=True, kinds=frozenset({"new", "closed"}), language="ru"),
        12: Prefs(via=frozenset({"email"})), 13: Prefs()}
    for proc in (first, second, listing):
        assert SECRET not in proc.stdout + proc.stderr
    assert time.monotonic() - started < 15


def test_prefs_list_says_none_when_nobody_has_preferences(webhook_env, capsys):
    assert main(["prefs", "list", "--portal", PORTAL]) == 0
    assert capsys.readouterr().out == "(none)\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--user", "7", "--kinds", "new,opened"], "--kinds: 'opened' is not known"),
    (["--user", "7", "--via", "sms"], "--via: 'sms' is not known"),
    (["--user", "7", "--language", "de"], "--language: 'de' is not known"),
    (["--user", "0", "--mute"], "--user: '0' is not a user id"),
    (["--user", "seven", "--mute"], "--user: 'seven' is not a user id"),
    (["--user", "7", "--mute", "--unmute"], "--mute and --unmute together"),
    (["--user", "7"], "nothing to set"),
])
def test_prefs_set_refuses_bad_values_in_one_line_and_writes_nothing(webhook_env, redis, keys, capsys, args,
                                                                      message):
    assert main(["prefs", "set", "--portal", PORTAL, "--user", "7", "--language", "en"]) == 0
    before = redis.hgetall(keys.prefs(PORTAL))
    capsys.readouterr()
    assert main(["prefs", "set", "--portal", PORTAL, *args]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("b24notify: prefs set: ") and message in err, err
    assert redis.hgetall(keys.prefs(PORTAL)) == before


@pytest.mark.parametrize("portal", ["other.example", "acme.example:8443", WEBHOOK_URL, "user@acme.example"])
def test_an_unknown_portal_is_refused_naming_the_configured_ones(webhook_env, redis, keys, capsys, portal):
    for argv in (["prefs", "set", "--portal", portal, "--user", "7", "--mute"], ["prefs", "list", "--portal", portal]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, err
        assert "unknown portal" in err and err.rstrip().endswith(f"configured portals: {PORTAL}")
        assert SECRET not in err
    assert not redis.exists(keys.prefs(portal.lower()))


def test_the_portals_of_the_config_file_and_of_app_installs_are_known(make_settings, monkeypatch, redis_url,
                                                                      key_prefix, redis, keys, tmp_path, capsys):
    make_settings()
    config = tmp_path / "portals.toml"
    config.write_text(f'[[portals]]\nwebhook_url = "https://second.example/rest/3/{SECRET}/"\n'
                      'application_token = "t2"\nnotify_chat = "chat2"\n')
    for name, value in {"B24_WEBHOOK_URL": WEBHOOK_URL, "B24_APPLICATION_TOKEN": "t", "NOTIFY_CHAT": "chat1",
                        "B24NOTIFY_CONFIG": str(config), "B24_CLIENT_ID": "app.client", "B24_CLIENT_SECRET": "cs",
                        "REDIS_URL": redis_url, "B24NOTIFY_KEY_PREFIX": key_prefix}.items():
        monkeypatch.setenv(name, value)
    AppRegistry(redis, keys).save(AppInstall("installed.example", "member-1", "https://installed.example/rest/",
                                             "app-token", "access", "refresh", time.time() + 3600, 1))
    assert main(["prefs", "set", "--portal", "second.example", "--user", "4", "--language", "ru"]) == 0
    assert main(["prefs", "set", "--portal", "installed.example", "--user", "4", "--mute"]) == 0
    capsys.readouterr()
    assert main(["prefs", "set", "--portal", "gone.example", "--user", "4", "--mute"]) == 2
    err = capsys.readouterr().err
    assert err.rstrip().endswith(f"configured portals: {PORTAL}, second.example, installed.example"), err
    assert PrefsStore(redis, keys).all("second.example") == {4: Prefs(language="ru")}
    assert PrefsStore(redis, keys).all("installed.example") == {4: Prefs(muted=True)}


def test_prefs_says_so_when_redis_does_not_answer(webhook_env, monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    assert main(["prefs", "list", "--portal", PORTAL]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Redis did not answer" in err


def test_the_help_says_when_a_change_applies():
    proc = subprocess.run([sys.executable, "-m", "b24notify.cli", "prefs", "set", "--help"], text=True,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0
    assert "from the next sync after this command returns" in " ".join(proc.stdout.split())
