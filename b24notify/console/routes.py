"""The console's pages and what guards them.

Addresses (a contract: operators bookmark them): ``/console`` (overview), ``/console/login``,
``/console/trace?task=ID[&portal=HOST]`` or ``?result=ID``, ``/console/deadletters``,
``/console/alerts``. Every route but the login form needs a logged-in session: a GET without one
is sent to the login form (and back afterwards), a POST is refused (401). Every POST carries the
session's CSRF token (403 without it, before anything changes). The routes exist only when a
console password is configured: otherwise ``/console`` is an unknown address (404).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from b24notify.console.auth import Password, Session, SessionCookies
from b24notify.console.charts import chart_svg
from b24notify.console.csrf import token_ok
from b24notify.console.deadletters import SHOWN, DeadFilter, fingerprint, select
from b24notify.console.forms import BadForm, first, read_form
from b24notify.console.lang import chosen, from_accept_language
from b24notify.console.overview import DeliveryOwners, Overview
from b24notify.console.pages import Pages
from b24notify.console.ratelimit import LoginLimiter
from b24notify.console.redact import Redactor
from b24notify.console.timeline import Group, alert_row, step_of, task_url
from b24notify.deadletter import DeadLetters
from b24notify.i18n import LANGUAGES, translations
from b24notify.keys import Keys
from b24notify.notices import CHANNEL_NAMES
from b24notify.portals.directory import PortalDirectory
from b24notify.portals.spec import webhook_portals
from b24notify.redis_conn import connect
from b24notify.settings import Settings
from b24notify.trace import TraceLog

log = logging.getLogger(__name__)

PREFIX = "/console"
REFRESH_SECONDS = 10
ALERTS_DEFAULT, ALERTS_MAX = 100, 500
MAX_ID = 2**53
# Where a login may send the browser back to: a console page, nothing else (no open redirect).
SAFE_NEXT = re.compile(r"^/console(/[A-Za-z0-9/_.-]*)?(\?[^\s\\#]*)?$")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

# The page a POST answered from is shown in another language at: (_lang_links)
POST_PAGES = {f"{PREFIX}/login": f"{PREFIX}/login", f"{PREFIX}/deadletters/replay-all": f"{PREFIX}/deadletters"}

Handler = Callable[[Request, "Visit"], Awaitable[Response]]


@dataclass
class Visit:
    """A request's session and language, as the handlers see them."""

    session: Session
    lang: str
    changed: bool = False  # the session must be written back (a new one, or ?lang= changed it)


def client_address(request: Request) -> str:
    """The client as uvicorn saw it: behind a proxy, whatever ``--forwarded-allow-ips`` lets it
    take from ``X-Forwarded-For`` (ratelimit.py)."""
    return request.client.host if request.client is not None else "unknown"


def safe_next(value: str) -> str:
    return value if SAFE_NEXT.match(value) and "//" not in value and ".." not in value else PREFIX


def _positive(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < MAX_ID:
        raise ValueError(text)
    return int(text)


class Console:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.b24notify_key_prefix)
        self.redis = connect(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)
        self.directory = PortalDirectory(settings, self.redis, self.keys)
        self.cookies = SessionCookies(settings)
        self.password = Password(settings)
        self.limiter = LoginLimiter(self.redis, settings.b24notify_key_prefix)
        self.pages = Pages(Redactor(settings, webhook_portals(settings)))
        self.overview = Overview(self.redis, self.keys, self.directory, settings.b24_rate_reserve)
        self.dead = DeadLetters(self.redis, self.keys)
        self.trace = TraceLog(self.redis, self.keys)

    def close(self) -> None:
        self.redis.close()

    def routes(self) -> list[Route]:
        return [
            Route(PREFIX, self._page(self.overview_page), methods=["GET"]),
            Route(f"{PREFIX}/login", self.login_form, methods=["GET"]),
            Route(f"{PREFIX}/login", self.login, methods=["POST"]),
            Route(f"{PREFIX}/logout", self._action(self.logout), methods=["POST"]),
            Route(f"{PREFIX}/trace", self._page(self.trace_page), methods=["GET"]),
            Route(f"{PREFIX}/deadletters", self._page(self.deadletters_page), methods=["GET"]),
            Route(f"{PREFIX}/deadletters/replay", self._action(self.replay_one), methods=["POST"]),
            Route(f"{PREFIX}/deadletters/replay-all", self._action(self.replay_filtered), methods=["POST"]),
            Route(f"{PREFIX}/alerts", self._page(self.alerts_page), methods=["GET"]),
        ]

    # -- guards ------------------------------------------------------------------------------------

    def _visit(self, request: Request, session: Session | None) -> Visit:
        fresh = session is None
        session = session or Session.fresh()
        asked = chosen(request.query_params.get("lang"))
        if asked is not None and asked != session.lang:
            return Visit(session.with_lang(asked), asked, True)
        return Visit(session, session.lang or from_accept_language(request.headers.get("accept-language")), fresh)

    def _page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def page(request: Request) -> Response:
            session = self.cookies.read(request)
            if session is None or not session.user:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return self._finish(RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", 303))
            visit = self._visit(request, session)
            try:
                response = await handler(request, visit)
            except RedisError as exc:
                return self._unavailable(request, visit, exc)
            if visit.changed:
                self.cookies.write(response, request, visit.session)
            return self._finish(response)

        return page

    def _action(self, handler: Callable[[Request, Visit, dict[str, list[str]]], Awaitable[Response]]
                ) -> Callable[[Request], Awaitable[Response]]:
        async def action(request: Request) -> Response:
            session = self.cookies.read(request)
            if session is None or not session.user:
                visit = self._visit(request, session)
                t = translations(visit.lang)
                return self._finish(self._html(
                    "message.html", visit, status=401, request=request, heading=t.gettext("Not logged in"),
                    text=t.gettext("Log in again, then repeat what you did."), back=f"{PREFIX}/login"))
            visit = self._visit(request, session)
            try:
                form = await read_form(request)
            except BadForm:
                return self._forbidden(request, visit)
            if not token_ok(session, form):
                return self._forbidden(request, visit)
            try:
                return self._finish(await handler(request, visit, form))
            except RedisError as exc:
                return self._unavailable(request, visit, exc)

        return action

    def _forbidden(self, request: Request, visit: Visit) -> Response:
        log.warning("event=console.csrf_refused path=%s client=%s", request.url.path, client_address(request))
        t = translations(visit.lang)
        return self._finish(self._html(
            "message.html", visit, status=403, request=request, heading=t.gettext("Refused"),
            text=t.gettext("This form has expired or did not come from this console. "
                           "Go back, reload the page and try again."), back=PREFIX))

    def _unavailable(self, request: Request, visit: Visit, exc: Exception) -> Response:
        log.error("event=console.redis_error path=%s error=%s", request.url.path, type(exc).__name__)
        t = translations(visit.lang)
        return self._finish(self._html("message.html", visit, status=503, request=request,
                                       heading=t.gettext("Redis did not answer"),
                                       text=t.gettext("The console reads everything from Redis. Try again in a "
                                                      "moment; `b24notify doctor` says what is wrong."),
                                       back=PREFIX))

    def _finish(self, response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    def _lang_links(self, request: Request | None) -> list[tuple[str, str]]:
        """The page in each language. A POST's page (a confirmation, a refusal) links to the page
        it came from: its own address answers POST only."""
        if request is None:
            return [(code, f"{PREFIX}?lang={code}") for code in LANGUAGES]
        if request.method != "GET":
            path = POST_PAGES.get(request.url.path, PREFIX)
            return [(code, f"{path}?lang={code}") for code in LANGUAGES]
        query = {k: v for k, v in request.query_params.items() if k != "lang"}
        return [(code, f"{request.url.path}?{urlencode({**query, 'lang': code})}") for code in LANGUAGES]

    def _html(self, template: str, visit: Visit, *, status: int = 200, request: Request | None = None,
              **context: Any) -> HTMLResponse:
        links = self._lang_links(request)
        context.setdefault("refresh", 0)
        context.setdefault("page", "")
        html = self.pages.render(template, visit.lang, user=visit.session.user, csrf=visit.session.csrf,
                                 lang_links=links, **context)
        return HTMLResponse(html, status_code=status)

    # -- login ---------------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        visit = self._visit(request, self.cookies.read(request))
        target = safe_next(request.query_params.get("next", PREFIX))
        if visit.session.user:
            response: Response = RedirectResponse(target, 303)
        else:
            response = self._html("login.html", visit, request=request, next=target, error="")
        self.cookies.write(response, request, visit.session)
        return self._finish(response)

    async def login(self, request: Request) -> Response:
        session = self.cookies.read(request)
        visit = self._visit(request, session)
        try:
            form = await read_form(request)
        except BadForm:
            return self._forbidden(request, visit)
        if not token_ok(session, form):
            return self._forbidden(request, visit)
        try:
            return await self._check_password(request, visit, form)
        except RedisError as exc:  # the rate limit cannot be checked: no login
            return self._unavailable(request, visit, exc)

    async def _check_password(self, request: Request, visit: Visit, form: dict[str, list[str]]) -> Response:
        address = client_address(request)
        t = translations(visit.lang)
        target = safe_next(first(form, "next"))
        blocked = await run_in_threadpool(self.limiter.blocked_for, address)
        if blocked:
            log.warning("event=console.login_refused client=%s seconds=%d", address, blocked)
            minutes = max(1, -(-blocked // 60))
            response = self._html("login.html", visit, status=429, request=request, next=target, error=t.ngettext(
                "Too many wrong passwords from your address: try again in %(num)d minute.",
                "Too many wrong passwords from your address: try again in %(num)d minutes.", minutes) % {
                "num": minutes})
            response.headers["Retry-After"] = str(blocked)
            return self._finish(response)
        if not await run_in_threadpool(self.password.matches, first(form, "password")):
            now_blocked = await run_in_threadpool(self.limiter.failed, address)
            log.warning("event=console.login_failed client=%s blocked=%s", address, now_blocked)
            return self._finish(self._html("login.html", visit, status=401, request=request, next=target,
                                           error=t.gettext("Wrong password.")))
        await run_in_threadpool(self.limiter.succeeded, address)
        log.info("event=console.login client=%s", address)
        done = RedirectResponse(target, 303)
        # A new session (and CSRF token) at login: a token seen before it is worth nothing after.
        self.cookies.write(done, request, Session.fresh(user=True, lang=visit.session.lang))
        return self._finish(done)

    async def logout(self, request: Request, visit: Visit, form: dict[str, list[str]]) -> Response:
        response = RedirectResponse(f"{PREFIX}/login", 303)
        self.cookies.clear(response, request)
        log.info("event=console.logout client=%s", client_address(request))
        return response

    # -- pages ---------------------------------------------------------------------------------------

    async def overview_page(self, request: Request, visit: Visit) -> Response:
        fleet = await run_in_threadpool(self.overview.read)
        t = translations(visit.lang)
        title = t.gettext("REST requests per 10 minutes against the budget (line), and alerts sent and failed, "
                          "over the last 24 hours")
        charts = {p.key: Markup(chart_svg(p.usage.rest_bars, p.usage.budget_bar, sent=p.usage.sent_bars,
                                          failed=p.usage.failed_bars, title=title)) for p in fleet.portals}
        return self._html("overview.html", visit, request=request, page="overview", fleet=fleet, charts=charts,
                          refresh=REFRESH_SECONDS)

    async def trace_page(self, request: Request, visit: Visit) -> Response:
        params = request.query_params
        query = {"task": params.get("task", "")[:20], "result": params.get("result", "")[:20],
                 "portal": params.get("portal", "")[:200]}
        t = translations(visit.lang)
        context: dict[str, Any] = {"query": query, "groups": [], "found_result": None, "error": "",
                                   "searched": bool(query["task"] or query["result"]), "nothing": ""}
        portals = await run_in_threadpool(self.directory.portals)
        context["portals"] = portals
        try:
            task, result = _positive(query["task"]), _positive(query["result"])
        except ValueError:
            context["error"] = t.gettext("A task or result id is a positive whole number.")
            return self._html("trace.html", visit, status=400, request=request, page="trace", **context)
        if query["portal"] and query["portal"] not in portals:
            context["error"] = t.gettext("b24notify serves no portal %(portal)s.") % {"portal": query["portal"]}
            return self._html("trace.html", visit, status=404, request=request, page="trace", **context)
        wanted = [query["portal"]] if query["portal"] else portals
        if task is None and result is not None:
            owner = await run_in_threadpool(self._find_result, wanted, result)
            if owner is None:
                context["nothing"] = t.gettext("No recorded sync names result #%(result)d.") % {"result": result}
            else:
                context["found_result"] = {"result": result, "task": owner[1]}
                wanted, task = [owner[0]], owner[1]
        if task is not None:
            context["groups"] = await run_in_threadpool(self._timelines, wanted, task, visit.lang)
            if not context["groups"]:
                context["nothing"] = t.gettext("Nothing is recorded for task #%(task)d.") % {"task": task}
        return self._html("trace.html", visit, request=request, page="trace", **context)

    def _find_result(self, portals: list[str], result: int) -> tuple[str, int] | None:
        for portal in portals:
            task = self.trace.find_result(portal, result)
            if task is not None:
                return portal, task
        return None

    def _timelines(self, portals: list[str], task: int, lang: str) -> list[Group]:
        groups = []
        for portal in portals:
            entries = self.trace.timeline(portal, task)
            if not entries:
                continue
            found = self.directory.get(portal)
            if found is None:
                continue
            spec, _ = found
            user = spec.webhook.user_id if spec.webhook is not None else 1
            url = task_url(self.redis, self.keys, portal, spec.portal_url, task, user)
            groups.append(Group(portal, task, url, [step_of(e, lang) for e in entries]))
        return groups

    async def deadletters_page(self, request: Request, visit: Visit) -> Response:
        selected = DeadFilter.of(lambda name: request.query_params.get(name, ""))
        portals = await run_in_threadpool(self.directory.portals)
        rows, _ = await run_in_threadpool(select, self.dead, DeliveryOwners(portals), selected)
        replayed = request.query_params.get("replayed", "")
        return self._html("deadletters.html", visit, request=request, page="deadletters", portals=portals,
                          channels=CHANNEL_NAMES, filters=selected, rows=rows, shown=rows[:SHOWN],
                          truncated=len(rows) > SHOWN, replayed=int(replayed) if replayed.isdigit() else None)

    def _back_to_list(self, selected: DeadFilter, replayed: int) -> Response:
        query = urlencode({**selected.query(), "replayed": str(replayed)})
        return RedirectResponse(f"{PREFIX}/deadletters?{query}", 303)

    def _replay(self, ids: list[str], request: Request) -> list[str]:
        replayed = self.dead.replay(ids, by=f"console:{client_address(request)}")
        log.info("event=console.replay client=%s asked=%d replayed=%d", client_address(request), len(ids),
                 len(replayed))
        return replayed

    async def replay_one(self, request: Request, visit: Visit, form: dict[str, list[str]]) -> Response:
        selected = DeadFilter.of(lambda name: first(form, name))
        delivery = first(form, "id")
        replayed = await run_in_threadpool(self._replay, [delivery], request) if delivery else []
        return self._back_to_list(selected, len(replayed))

    async def replay_filtered(self, request: Request, visit: Visit, form: dict[str, list[str]]) -> Response:
        selected = DeadFilter.of(lambda name: first(form, name))
        portals = await run_in_threadpool(self.directory.portals)
        rows, _ = await run_in_threadpool(select, self.dead, DeliveryOwners(portals), selected)
        ids = [row.id for row in rows]
        print_ = fingerprint(ids)
        if first(form, "confirm") == "1" and ids and first(form, "fingerprint") == print_:
            replayed = await run_in_threadpool(self._replay, ids, request)
            return self._back_to_list(selected, len(replayed))
        changed = first(form, "confirm") == "1"
        back = f"{PREFIX}/deadletters" + (f"?{urlencode(selected.query())}" if selected.query() else "")
        return self._html("confirm.html", visit, request=request, page="deadletters", filters=selected,
                          count=len(ids), fingerprint=print_, changed=changed, back=back)

    async def alerts_page(self, request: Request, visit: Visit) -> Response:
        t = translations(visit.lang)
        portals = await run_in_threadpool(self.directory.portals)
        portal = request.query_params.get("portal", "")
        limit_text = request.query_params.get("limit", str(ALERTS_DEFAULT))
        limit = int(limit_text) if limit_text.isdigit() else ALERTS_DEFAULT
        limit = min(max(limit, 1), ALERTS_MAX)
        error = ""
        if portal and portal not in portals:
            error, rows = t.gettext("b24notify serves no portal %(portal)s.") % {"portal": portal}, []
        else:
            entries = await run_in_threadpool(self.trace.recent_deliveries, portal or None, limit)
            rows = [alert_row(e, visit.lang) for e in entries]
        return self._html("alerts.html", visit, status=404 if error else 200, request=request, page="alerts",
                          portals=portals, portal=portal, limit=limit, max_limit=ALERTS_MAX, rows=rows, error=error)


def console_routes(settings: Settings) -> tuple[list[Route], Callable[[], None]]:
    """The console's routes and what closes them, or nothing when no console password is set."""
    if not settings.console_enabled:
        return [], lambda: None
    console = Console(settings)
    return console.routes(), console.close
