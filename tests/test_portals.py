"""Portals from config: the TOML file of webhook portals, mode rules, app installs in Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from b24notify.portals.binding import APP_EVENTS, missing_events, webhook_setup_steps
from b24notify.portals.registry import AppInstall, AppRegistry, endpoint_problem
from b24notify.portals.spec import require_channels, webhook_portals
from b24notify.settings import ConfigError

SECRET = "s3cr3t-code-do-not-print"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "portals.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_file_portals_each_with_their_own_token_budget_and_targets(make_settings, tmp_path):
    path = write(tmp_path, f"""
[[portals]]
webhook_url = "https://a.bitrix24.com/rest/1/{SECRET}/"
application_token = "token-a"
rate_limit = "5/250"
notify_chat = "chat7"

[[portals]]
webhook_url = "https://b.bitrix24.com/rest/9/other/"
application_token = "token-b"
member_id = "m-b"
notify_email = ["ops@b.example"]
""")
    settings = make_settings(b24notify_config=str(path), notify_chat="chat1", notify_email="all@x.example",
                             smtp_url="smtp://127.0.0.1:25", email_from="n@x.example")
    a, b = webhook_portals(settings)
    assert (a.key, a.rate_limit, a.notify_chat, a.notify_email) == ("a.bitrix24.com", "5/250", "chat7",
                                                                      ("all@x.example",))
    assert (b.key, b.rate_limit, b.notify_chat, b.notify_email) == ("b.bitrix24.com", "2/50", "chat1",
                                                                      ("ops@b.example",))
    assert (a.application_token, b.application_token, b.member_id) == ("token-a", "token-b", "m-b")
    assert SECRET not in repr(a)  # a logged spec never shows the webhook code
    require_channels(settings)


@pytest.mark.parametrize(("text", "message"), [
    ("[[portals]]\nwebhook_url = 'https://a.b/rest/1/x/'\n", "line 1: portals[0].application_token: Field required"),
    ("[[portals]]\nwebhook_url = 'http://a.b/rest/1/x/'\napplication_token = 't'\n", "must use https"),
    ("[[portals]]\nwebhook_url = 'https://a.b/rest/1/x/'\napplication_token = 't'\nrate_limit = 'fast'\n",
     "portals[0].rate_limit"),
    ("[[portals]]\nwebhook_url = 'https://a.b/rest/1/x/'\napplication_token = 't'\nnotify_chat = 'me'\n",
     "DIALOG_ID"),
    ("[[portals]]\nwebhook_url = 'https://a.b/rest/1/x/'\napplication_token = 't'\ncolour = 'red'\n",
     "portals[0].colour: Extra inputs are not permitted"),
    ("[[portals]\n", "is not valid TOML"),
])
def test_a_bad_file_is_one_clear_line(make_settings, tmp_path, text, message):
    settings = make_settings(b24notify_config=str(write(tmp_path, text)), notify_chat="chat1")
    with pytest.raises(ConfigError) as caught:
        webhook_portals(settings)
    assert message in str(caught.value)
    assert str(caught.value).startswith("B24NOTIFY_CONFIG: ")


def test_a_file_without_portals_needs_a_portal_from_the_environment(make_settings, tmp_path):
    path = write(tmp_path, "language = 'ru'\n[[routes]]\nto = ['creator']\n")
    with pytest.raises(ConfigError, match=r"B24NOTIFY_CONFIG has no \[\[portals\]\]"):
        require_channels(make_settings(b24notify_config=str(path)))
    settings = make_settings(b24notify_config=str(path), b24_webhook_url="https://a.b/rest/2/y/",
                             b24_application_token="u")
    require_channels(settings)
    [spec] = webhook_portals(settings)
    assert spec.language == "ru" and [r.roles for r in spec.routes] == [("creator",)]


def test_the_same_portal_twice_is_refused(make_settings, tmp_path):
    path = write(tmp_path, "[[portals]]\nwebhook_url = 'https://a.b/rest/1/x/'\napplication_token = 't'\n")
    settings = make_settings(b24notify_config=str(path), b24_webhook_url="https://a.b/rest/2/y/",
                             b24_application_token="u", notify_chat="chat1")
    with pytest.raises(ConfigError, match=r"a\.b is configured twice"):
        webhook_portals(settings)


def test_a_missing_file_names_itself(make_settings, tmp_path):
    settings = make_settings(b24notify_config=str(tmp_path / "nope.toml"), notify_chat="chat1")
    with pytest.raises(ConfigError, match=r"cannot read .*nope\.toml"):
        webhook_portals(settings)


def test_mode_rules(make_settings):
    with pytest.raises(ConfigError, match="B24_WEBHOOK_URL: is not set"):
        make_settings().require_portal()
    with pytest.raises(ConfigError, match="B24_CLIENT_SECRET: is required"):
        make_settings(b24_client_id="app.1").require_portal()
    app = make_settings(b24_client_id="app.1", b24_client_secret="x", notify_chat="chat1")
    require_channels(app)
    assert app.app_mode and webhook_portals(app) == []
    with pytest.raises(ConfigError, match="B24_OAUTH_URL: must use https"):
        make_settings(b24_oauth_url="http://oauth.example.com/oauth/token/")


def test_client_endpoint_must_be_the_installing_portal():
    assert endpoint_problem("https://a.bitrix24.com/rest/", "a.bitrix24.com") is None
    assert endpoint_problem("http://127.0.0.1:9/rest/", "127.0.0.1:9") is None
    assert "not https" in (endpoint_problem("http://a.bitrix24.com/rest/", "a.bitrix24.com") or "")
    assert endpoint_problem("https://evil.example/rest/", "a.bitrix24.com")
    assert endpoint_problem("https://a.bitrix24.com/rest/?x=1", "a.bitrix24.com")
    assert endpoint_problem("https://user@a.bitrix24.com/rest/", "a.bitrix24.com")


def test_registry_round_trip_and_compare_and_set_of_tokens(redis, keys):
    registry = AppRegistry(redis, keys)
    install = AppInstall("a.bitrix24.com", "m1", "https://a.bitrix24.com/rest/", "app-token", "acc-1", "ref-1",
                         expires=100.0, user_id=5, installed_at=1.0)
    registry.save(install)
    assert registry.get("a.bitrix24.com") == install
    assert registry.portals() == ["a.bitrix24.com"]
    assert "acc-1" not in repr(install) and "ref-1" not in repr(install) and "app-token" not in repr(install)
    assert registry.replace_tokens(install, "acc-2", "ref-2", 200.0)
    # A refresh that started from the old refresh token must not overwrite the new pair.
    assert not registry.replace_tokens(install, "acc-3", "ref-3", 300.0)
    stored = registry.get("a.bitrix24.com")
    assert stored is not None and (stored.access_token, stored.refresh_token) == ("acc-2", "ref-2")
    registry.remove("a.bitrix24.com")
    assert registry.get("a.bitrix24.com") is None and registry.portals() == []


def test_install_defaults_chat_to_the_installing_user(make_settings):
    install = AppInstall("a.b", "m", "https://a.b/rest/", "t", "a", "r", user_id=5)
    assert install.portal_spec(make_settings(b24_client_id="x", b24_client_secret="y")).notify_chat == "5"
    spec = install.portal_spec(make_settings(b24_client_id="x", b24_client_secret="y", notify_chat="chat3"))
    assert spec.notify_chat == "chat3" and spec.portal_url == "https://a.b" and spec.webhook is None


def test_only_missing_events_are_bound():
    handler = "https://n.example/webhooks/bitrix24"
    existing = [{"event": "ontaskadd", "handler": handler}, {"event": "ONTASKUPDATE", "handler": handler + "/"},
                {"event": "ONTASKDELETE", "handler": "https://other.example/hook"}]
    assert missing_events(existing, handler) == [e for e in APP_EVENTS if e not in ("ONTASKADD", "ONTASKUPDATE")]
    assert missing_events([{"event": e, "handler": handler} for e in APP_EVENTS], handler) == []


def test_webhook_mode_setup_steps_name_the_handler_and_every_event(make_settings):
    settings = make_settings(b24_webhook_url=f"https://a.b/rest/1/{SECRET}/", b24_application_token="t",
                             notify_chat="chat1", b24notify_public_url="https://n.example")
    text = webhook_setup_steps(webhook_portals(settings)[0], settings.b24notify_public_url)
    assert "https://n.example/webhooks/bitrix24" in text and "ONTASKCOMMENTDELETE" in text
    assert SECRET not in text
