"""The installed OAuth app: ONAPPINSTALL / ONAPPUNINSTALL, event.bind and friends, and task events
delivered to bound handlers in the application shape (docs/protocol.md §1, §10)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from b24notify.devtools.simulator import RunningSimulator
from b24notify.phpform import parse_php_query
from tests.support.servers import ThreadedServer

from .conftest import EventReceiver, ReceivedEvent, Rest, SimulatorFactory

APP_AUTH_KEYS = ["access_token", "expires", "expires_in", "scope", "domain", "server_endpoint", "status",
                 "client_endpoint", "member_id", "user_id", "application_token"]


def _auth(event: ReceivedEvent) -> dict[str, str]:
    return {key[5:-1]: value for key, value in event.pairs if key.startswith("auth[")}


def _install(sim: RunningSimulator, receiver: EventReceiver, user_id: int = 1) -> dict[str, str]:
    assert sim.control.install_app(handler_url=receiver.url, user_id=user_id)["delivered"] is True
    return _auth(receiver.named("ONAPPINSTALL")[-1])


def _call(sim: RunningSimulator, method: str, token: str, params: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{sim.client_endpoint}{method}", json={**(params or {}), "auth": token}, timeout=10)


def _settle(sim: RunningSimulator) -> None:
    assert sim.control.wait_events(timeout=5.0), "events still queued"


def test_event_methods_refuse_the_incoming_webhook(rest: Rest, sim: RunningSimulator) -> None:
    sim.control.install_app()
    for method in ("event.bind", "event.get", "event.unbind"):
        answer = rest.post(method, {"event": "ONTASKADD", "handler": "http://app.test/h"})
        assert (answer.status_code, answer.json()) == (401, {
            "error": "WRONG_AUTH_TYPE", "error_description": "Current authorization type is denied for this method"})
    assert sim.control.bindings() == []


def test_bind_get_and_unbind(sim: RunningSimulator, receiver: EventReceiver) -> None:
    token = _install(sim, receiver)["access_token"]
    handler = "http://app.test/b24/handler"

    assert _call(sim, "event.bind", token, {"event": "onTaskAdd", "handler": handler}).json()["result"] is True
    assert _call(sim, "event.get", token).json()["result"] == [
        {"event": "ONTASKADD", "handler": handler, "auth_type": "0", "offline": 0}]
    duplicate = _call(sim, "event.bind", token, {"event": "ONTASKADD", "handler": handler, "auth_type": 5})
    assert (duplicate.status_code, duplicate.json()) == (400, {
        "error": "ERROR_CORE", "error_description": "Unable to set event handler: Handler already binded"})
    unknown = _call(sim, "event.bind", token, {"event": "ONCRMDEALADD", "handler": handler})
    assert (unknown.status_code, unknown.json()["error"]) == (400, "ERROR_EVENT_NOT_FOUND")

    assert _call(sim, "event.unbind", token, {"event": "ontaskadd", "handler": handler}).json()["result"] == {
        "count": 1}
    assert _call(sim, "event.unbind", token, {"event": "ONTASKADD", "handler": handler}).json()["result"] == {
        "count": 0}
    assert _call(sim, "event.get", token).json()["result"] == []


def test_install_delivers_onappinstall_with_working_tokens(sim: RunningSimulator, receiver: EventReceiver) -> None:
    answer = sim.control.install_app(handler_url=receiver.url, user_id=503)

    assert (answer["delivered"], answer["status"], answer["member_id"]) == (True, 200, sim.config.member_id)
    [event] = receiver.named("ONAPPINSTALL")
    assert event.content_type == "application/x-www-form-urlencoded"
    assert event.pairs[:5] == [("event", "ONAPPINSTALL"), ("data[VERSION]", "1"), ("data[ACTIVE]", "Y"),
                               ("data[INSTALLED]", "Y"), ("data[LANGUAGE_ID]", "en")]
    assert event.pairs[5][0] == "ts" and abs(int(event.pairs[5][1]) - time.time()) < 60
    auth = _auth(event)
    assert list(auth) == [*APP_AUTH_KEYS[:-1], "refresh_token", "application_token"]
    assert (auth["domain"], auth["client_endpoint"], auth["server_endpoint"]) == (
        sim.domain, sim.client_endpoint, "https://oauth.bitrix.info/rest/")
    assert (auth["member_id"], auth["user_id"], auth["expires_in"], auth["status"]) == (
        sim.config.member_id, "503", "3600", "L")
    assert auth["application_token"] == answer["application_token"] != "test-app-token"
    assert sim.control.app()["application_token"] == answer["application_token"]

    who = _call(sim, "tasks.task.add", auth["access_token"], {"fields": {"TITLE": "From the installer"}})
    assert who.json()["result"]["task"]["createdBy"] == "503"
    refreshed = httpx.get(sim.oauth_url, params={"grant_type": "refresh_token", "client_id": "app.sim.1",
                                                 "client_secret": "sim-app-secret",
                                                 "refresh_token": auth["refresh_token"]})
    assert refreshed.status_code == 200


def test_install_without_a_handler_is_logged_not_sent(sim: RunningSimulator, receiver: EventReceiver) -> None:
    answer = sim.control.install_app()
    assert (answer["delivered"], answer["status"]) == (False, None)
    assert receiver.named("ONAPPINSTALL") == []
    [logged] = [e for e in sim.control.events() if e["event"] == "ONAPPINSTALL"]
    assert (logged["kind"], logged["outcome"]) == ("app", "no_handler")


def test_a_bound_task_event_arrives_in_the_app_shape(
    rest: Rest, sim: RunningSimulator, receiver: EventReceiver
) -> None:
    install = _install(sim, receiver)
    app_handler = receiver.url + "?app=1"
    assert _call(sim, "event.bind", install["access_token"], {"event": "ONTASKADD", "handler": app_handler}).is_success
    task_id = rest.add_task()
    _settle(sim)

    webhook_copy, app_copy = sorted(receiver.named("ONTASKADD"), key=lambda e: "auth[access_token]" in e.form)
    assert _auth(webhook_copy)["application_token"] == "test-app-token"
    assert "access_token" not in _auth(webhook_copy)
    assert app_copy.pairs[:7] == [
        ("event", "ONTASKADD"), ("event_handler_id", "1"), ("data[FIELDS_BEFORE]", "undefined"),
        ("data[FIELDS_AFTER][ID]", str(task_id)), ("data[IS_ACCESSIBLE_BEFORE]", "N"),
        ("data[IS_ACCESSIBLE_AFTER]", "undefined"), ("ts", app_copy.form["ts"])]
    auth = _auth(app_copy)
    assert list(auth) == APP_AUTH_KEYS
    assert (auth["application_token"], auth["member_id"], auth["domain"], auth["user_id"]) == (
        install["application_token"], sim.config.member_id, sim.domain, "1")
    assert _call(sim, "user.get", auth["access_token"]).status_code == 200

    kinds = [(e["kind"], e["handler"], e["outcome"]) for e in sim.control.events() if e["event"] == "ONTASKADD"]
    assert kinds == [("webhook", receiver.url, "sent"), ("app", app_handler, "sent")]


def test_app_events_carry_the_acting_user_or_the_bound_auth_type(
    sim: RunningSimulator, receiver: EventReceiver
) -> None:
    token = _install(sim, receiver, user_id=503)["access_token"]
    _call(sim, "event.bind", token, {"event": "ONTASKUPDATE", "handler": receiver.url + "?as=actor"})
    _call(sim, "event.bind", token, {"event": "ONTASKUPDATE", "handler": receiver.url + "?as=7", "auth_type": 7})
    task_id = int(_call(sim, "tasks.task.add", token, {"fields": {"TITLE": "x"}}).json()["result"]["task"]["id"])
    _call(sim, "tasks.task.complete", token, {"taskId": task_id})
    _settle(sim)

    app_copies = [e for e in receiver.named("ONTASKUPDATE") if "auth[access_token]" in e.form]
    assert sorted(_auth(e)["user_id"] for e in app_copies) == ["503", "7"]


def test_app_events_after_expiry_carry_a_fresh_token(
    rest: Rest, sim: RunningSimulator, receiver: EventReceiver
) -> None:
    token = _install(sim, receiver)["access_token"]
    _call(sim, "event.bind", token, {"event": "ONTASKADD", "handler": receiver.url + "?app=1"})
    rest.add_task()
    sim.control.expire_tokens()
    rest.add_task()
    _settle(sim)

    first, second = [_auth(e)["access_token"] for e in receiver.named("ONTASKADD") if "auth[access_token]" in e.form]
    assert _call(sim, "user.get", first).json()["error"] == "expired_token"
    assert _call(sim, "user.get", second).status_code == 200


def test_app_deliveries_get_the_same_chaos_and_are_never_retried(
    start_simulator: SimulatorFactory, receiver: EventReceiver
) -> None:
    unreachable = "http://127.0.0.1:9/unreachable"
    sim = start_simulator(event_duplicate_probability=1.0)
    token = _install(sim, receiver)["access_token"]
    _call(sim, "event.bind", token, {"event": "ONTASKADD", "handler": receiver.url})
    _call(sim, "event.bind", token, {"event": "ONTASKADD", "handler": unreachable})
    with Rest(sim.webhook_url) as rest:
        rest.add_task()
    _settle(sim)

    assert len(receiver.named("ONTASKADD")) == 2
    outcomes = sorted((e["handler"], e["copy"], e["outcome"]) for e in sim.control.events()
                      if e["kind"] == "app" and e["event"] == "ONTASKADD")
    assert outcomes == sorted([(unreachable, 1, "failed"), (unreachable, 2, "failed"),
                               (receiver.url, 1, "sent"), (receiver.url, 2, "sent")])


def test_uninstall_revokes_tokens_and_sends_onappuninstall_without_them(
    sim: RunningSimulator, receiver: EventReceiver
) -> None:
    install = _install(sim, receiver)
    token = install["access_token"]
    # Bound to the install handler too: it still gets one copy.
    _call(sim, "event.bind", token, {"event": "ONAPPUNINSTALL", "handler": receiver.url})
    _call(sim, "event.bind", token, {"event": "ONTASKADD", "handler": receiver.url})

    answer = sim.control.uninstall_app()

    assert (answer["delivered"], answer["status"], answer["member_id"]) == (True, 200, sim.config.member_id)
    [event] = receiver.named("ONAPPUNINSTALL")
    assert [(k, v) for k, v in event.pairs if k.startswith("data[")] == [
        ("data[LANGUAGE_ID]", "en"), ("data[CLEAN]", "0")]
    assert _auth(event) == {
        "domain": sim.domain, "server_endpoint": "https://oauth.bitrix.info/rest/",
        "client_endpoint": sim.client_endpoint, "member_id": sim.config.member_id,
        "application_token": install["application_token"]}
    assert _call(sim, "user.get", token).json()["error"] == "invalid_token"
    refresh = httpx.get(sim.oauth_url, params={"grant_type": "refresh_token", "client_id": "app.sim.1",
                                               "client_secret": "sim-app-secret",
                                               "refresh_token": install["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"
    assert sim.control.app() == {"installed": False, "handler_url": receiver.url, "bindings": []}
    with Rest(sim.webhook_url) as rest:
        rest.add_task()
    _settle(sim)
    assert [e["kind"] for e in sim.control.events() if e["event"] == "ONTASKADD"] == ["webhook"]


def test_the_install_handler_can_bind_while_handling_onappinstall(sim: RunningSimulator) -> None:
    """Apps bind their events from the install handler, before answering ONAPPINSTALL."""
    answers: list[Any] = []

    async def on_event(request: Request) -> Response:
        form = parse_php_query(await request.body())
        async with httpx.AsyncClient() as client:
            bound = await client.post(f"{form['auth']['client_endpoint']}event.bind", json={
                "auth": form["auth"]["access_token"], "event": "ONTASKCOMMENTADD", "handler": "http://app.test/h"})
        answers.append(bound.json())
        return Response(status_code=200)

    with ThreadedServer(Starlette(routes=[Route("/install", on_event, methods=["POST"])])) as app_server:
        installed = sim.control.install_app(handler_url=f"{app_server.url}/install")

    assert (installed["delivered"], answers) == (True, [{"result": True, "time": answers[0]["time"]}])
    assert [b["event"] for b in sim.control.bindings()] == ["ONTASKCOMMENTADD"]
