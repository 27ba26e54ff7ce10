"""The demo wiring for ``b24notify up`` with no portal configured, and ``b24notify simulate``.

The demo starts the simulator, an SMTP sink and a printer that shows each chat message and each
personal notification the simulator receives and each mail the sink receives, in the order they
arrived. Alerts go to a chat, a team mailbox and the task's people (its creator and auditors: a
personal notification and an e-mail each); one of them reads them in Russian (a preference stored
at start), the others in English. The scripted task activity starts only once the web answers
(``start_activity``), so no event of it is lost; its first scene is fixed, so the first alert
reaches an English and a Russian reader. The demo's keys live under a prefix and a queue of its own
run, carry a TTL while it runs (a demo killed outright leaves nothing behind for ever) and are
deleted when it stops.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job

from b24notify.devtools.simulator import RunningSimulator, SimulatorConfig, SimulatorControl, serve_forever
from b24notify.devtools.simulator.activity import Cast, run_activity
from b24notify.devtools.smtp_sink import SmtpSink, print_message
from b24notify.keys import Keys
from b24notify.prefs import PrefsStore
from b24notify.settings import Settings, parse_webhook_url

log = logging.getLogger(__name__)

DEMO_CHAT = "chat1"
DEMO_RECIPIENT = "team@example.com"
DEMO_PEOPLE = "creator,auditors"  # NOTIFY_PEOPLE: the roles told of every task's results
# The simulator's users: 1 Admin, 503 Anna Smith, 504 Boris Ivanov, 505 Chen Li.
RUSSIAN_READER = 504  # reads their alerts in Russian (a preference the demo stores); the rest English
# The first task: Anna asks Chen, Boris audits; Chen posts its result next, so the first alert goes
# to an English reader (Anna) and a Russian one (Boris) as well as the chat and the team mailbox.
OPENING = Cast(creator=503, responsible=505, auditors=(RUSSIAN_READER,))
ACTIVITY_SECONDS = 4.0
DEMO_KEY_TTL_SECONDS = 24 * 3600  # a demo is for minutes; a killed one's keys are gone a day later
KEY_STAMP_SECONDS = 5.0
PRINT_POLL_SECONDS = 0.25
# A mail is printed this long after it arrived: by then the printer has read the chat messages that
# reached the portal before it, so an alert's chat message is not printed after its e-mail.
MAIL_HOLD_SECONDS = 4 * PRINT_POLL_SECONDS


@dataclass(frozen=True)
class DemoNamespace:
    """Where one demo run keeps its state: its own key prefix and RQ queue, never the real ones."""

    prefix: str
    queue: str

    @classmethod
    def for_run(cls, settings: Settings) -> DemoNamespace:
        run = secrets.token_hex(3)
        return cls(f"{settings.b24notify_key_prefix}-demo-{run}", f"{settings.b24notify_queue}-demo-{run}")


class DemoKeys:
    """The demo's keys in a Redis that may be the operator's own (``make run`` uses db 0).

    Our keys and RQ's keys of the demo queue get ``DEMO_KEY_TTL_SECONDS`` when they have no TTL of
    their own (keys with one are left alone: leases, locks and caches rely on theirs), refreshed
    while the demo runs; ``delete`` removes them all when it stops."""

    def __init__(self, redis: Redis, namespace: DemoNamespace) -> None:
        self._redis = redis
        self._namespace = namespace
        self._stamped: set[bytes] = set()

    def _keys(self) -> list[bytes]:
        patterns = (f"{self._namespace.prefix}:*", f"rq:*{self._namespace.queue}*")
        return [key for pattern in patterns for key in self._redis.scan_iter(match=pattern, count=500)]

    def stamp(self) -> None:
        keys = self._keys()
        self._stamped &= set(keys)
        with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.ttl(key)
            ttls = pipe.execute()
        with self._redis.pipeline(transaction=False) as pipe:
            for key, ttl in zip(keys, ttls, strict=True):
                # Stamp keys without a TTL; refresh our own stamps so nothing expires mid-demo (a
                # short TTL is never ours: the key was made again with its own). A key given a TTL
                # of its own between the two round trips gets ours instead: only delivery records
                # do that (30 days once sent), and a day is plenty for a demo's.
                ours = (key in self._stamped
                        and DEMO_KEY_TTL_SECONDS // 2 < ttl < DEMO_KEY_TTL_SECONDS - 10 * KEY_STAMP_SECONDS)
                if ttl == -1 or ours:
                    pipe.expire(key, DEMO_KEY_TTL_SECONDS)
                    self._stamped.add(key)
            pipe.execute()

    def keep_expiring(self, stop: threading.Event) -> None:
        while True:
            try:
                self.stamp()
            except RedisError as exc:
                log.warning("event=demo.keys_unstamped error=%s", type(exc).__name__)
            if stop.wait(KEY_STAMP_SECONDS):
                return

    def delete(self) -> None:
        """Delete every key of the demo run (call it once its web and workers have stopped)."""
        try:
            queue = Queue(self._namespace.queue, connection=self._redis)
            job_keys = [Job.key_for(job_id) for job_id in queue.failed_job_registry.get_job_ids()]
            queue.delete(delete_jobs=True)  # also takes the queue off RQ's list of queues
            keys = self._keys() + job_keys
            deleted = int(self._redis.delete(*keys)) if keys else 0
        except RedisError as exc:  # what was stamped still expires (DEMO_KEY_TTL_SECONDS)
            log.warning("event=demo.keys_not_deleted prefix=%s error=%s", self._namespace.prefix,
                        type(exc).__name__)
            return
        log.info("event=demo.keys_deleted prefix=%s keys=%d", self._namespace.prefix, deleted)


class AlertPrinter:
    """Prints what the demo's portal receives (chat messages, personal notifications) and its mailbox
    (e-mails), each with the time it arrived. The portal's are read from the simulator every
    ``PRINT_POLL_SECONDS``; mails wait ``MAIL_HOLD_SECONDS`` so that what reached the portal first
    is printed first."""

    def __init__(self, control: SimulatorControl, out: TextIO | None = None) -> None:
        self._control = control
        self._out = out or sys.stdout
        self._lock = threading.Lock()
        self._mails: list[tuple[float, datetime, EmailMessage]] = []
        self._chats_seen = 0
        self._notifications_seen = 0
        self._names: dict[int, str] = {}

    def on_mail(self, message: EmailMessage) -> None:
        """The SMTP sink's callback (its thread): keep the mail for the printer."""
        with self._lock:
            self._mails.append((time.monotonic(), datetime.now().astimezone(), message))

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(PRINT_POLL_SECONDS):
            self.print_new(hold=MAIL_HOLD_SECONDS)
        self.print_new(hold=0.0)

    def print_new(self, *, hold: float) -> None:
        ripe_before = time.monotonic() - hold
        with self._lock:
            ripe = [mail for mail in self._mails if mail[0] <= ripe_before]
            self._mails = self._mails[len(ripe):]
        for message in self._new_chat_messages():
            self._print_chat(message)
        for notification in self._new_notifications():
            self._print_notification(notification)
        for _, arrived, mail in ripe:
            print(f"\n--- {arrived:%H:%M:%S} e-mail to {mail['To']} ---", file=self._out)
            print_message(mail, self._out)

    def _new_chat_messages(self) -> list[dict[str, Any]]:
        try:
            messages = self._control.messages()
        except httpx.HTTPError as exc:  # the printer must not die with a passing hiccup
            log.debug("event=demo.messages_unavailable error=%s", type(exc).__name__)
            return []
        new = messages[self._chats_seen:]
        self._chats_seen = max(self._chats_seen, len(messages))
        return new

    def _new_notifications(self) -> list[dict[str, Any]]:
        try:
            notifications = self._control.notification_history()
        except httpx.HTTPError as exc:
            log.debug("event=demo.notifications_unavailable error=%s", type(exc).__name__)
            return []
        new = notifications[self._notifications_seen:]
        self._notifications_seen = max(self._notifications_seen, len(notifications))
        return new

    def person(self, user_id: int) -> str:
        """``Boris Ivanov (504)``: the portal's name for a user, read once (``user 504`` if it has none)."""
        if user_id not in self._names:
            try:
                users = self._control.users()
            except httpx.HTTPError as exc:
                log.debug("event=demo.users_unavailable error=%s", type(exc).__name__)
                return f"user {user_id}"
            for user in users:
                name = " ".join(str(user.get(part) or "") for part in ("name", "last_name")).strip()
                self._names[int(user["id"])] = f"{name} ({user['id']})" if name else f"user {user['id']}"
        return self._names.get(user_id, f"user {user_id}")

    def _print_chat(self, message: dict[str, Any]) -> None:
        text = str(message.get("message") or "")
        print(f"\n--- {_clock(message.get('created_at'))} chat message to {message.get('dialog_id', DEMO_CHAT)} ---\n"
              f"{text}\n{'-' * 72}", file=self._out, flush=True)

    def _print_notification(self, notification: dict[str, Any]) -> None:
        try:
            to = self.person(int(notification["user_id"]))
        except (KeyError, TypeError, ValueError):
            to = "someone"
        text = str(notification.get("message") or "")
        print(f"\n--- {_clock(notification.get('at'))} personal notification to {to} ---\n{text}\n{'-' * 72}",
              file=self._out, flush=True)


def _clock(stamp: object) -> str:
    """An ISO time from the simulator as the local HH:MM:SS."""
    try:
        return f"{datetime.fromisoformat(str(stamp)).astimezone():%H:%M:%S}"
    except ValueError:
        return "--:--:--"


def _redacted(url: str) -> str:
    """A Redis URL to show: its password, if it has one, replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


class Demo:
    """A running demo: what the web and workers need (``env``), and its parts to start and stop."""

    def __init__(self, sim: RunningSimulator, sink: SmtpSink, namespace: DemoNamespace, token: str, *,
                 redis_url: str = "", russian_reader: str = "") -> None:
        self.sim = sim
        self.sink = sink
        self.namespace = namespace
        self._token = token
        self._redis_url = redis_url
        self._russian_reader = russian_reader  # "Boris Ivanov (504)"; empty: the preference was not stored
        self._activity_stop = threading.Event()
        self._activity: threading.Thread | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            "B24_WEBHOOK_URL": self.sim.webhook_url,
            "B24_APPLICATION_TOKEN": self._token,
            "NOTIFY_CHAT": DEMO_CHAT,
            "NOTIFY_EMAIL": DEMO_RECIPIENT,
            "NOTIFY_PEOPLE": DEMO_PEOPLE,
            "SMTP_URL": self.sink.url,
            "EMAIL_FROM": "b24notify@example.com",
            "B24NOTIFY_KEY_PREFIX": self.namespace.prefix,
            "B24NOTIFY_QUEUE": self.namespace.queue,
        }

    def start_activity(self) -> None:
        """Start the scripted activity: call it once the web answers, or its first events are lost."""
        self._activity = threading.Thread(target=run_activity, args=(self.sim.webhook_url, self._activity_stop,
                                                                      ACTIVITY_SECONDS),
                                          kwargs={"opening": OPENING}, name="b24notify-demo-activity", daemon=True)
        self._activity.start()

    def stop_activity(self) -> None:
        """Stop the activity and let the simulator send its last events: call it before the web stops."""
        self._activity_stop.set()
        if self._activity is not None:
            self._activity.join(timeout=15)
        control = SimulatorControl(self.sim.base_url, timeout=5.0)
        try:
            control.wait_events(timeout=3.0)
        except httpx.HTTPError as exc:
            log.warning("event=demo.events_not_drained error=%s", type(exc).__name__)
        finally:
            control.close()

    def announce(self, web_url: str) -> None:
        sim = self.sim.base_url
        print(f"b24notify: demo running — a simulated portal gets a new task or result every {ACTIVITY_SECONDS:g} s; "
              "each alert prints below as a chat message, personal notifications to the task's creator and "
              "auditors, and e-mails, the first within a minute.\n"
              f"b24notify: {self.languages_line()}\n"
              f"b24notify: look inside the portal: curl {sim}/_sim/messages (chat), {sim}/_sim/notifications, "
              f"{sim}/_sim/calls (REST calls), POST {sim}/_sim/faults (make calls fail); the web is {web_url}.\n"
              "b24notify: your own portal: set B24_WEBHOOK_URL, B24_APPLICATION_TOKEN and NOTIFY_CHAT, NOTIFY_EMAIL or "
              "NOTIFY_PEOPLE (README \"Register b24notify in Bitrix24\", \"Configuration\"), then make run again.\n"
              f"b24notify: Ctrl-C stops; this demo's Redis keys ({self.namespace.prefix}:*) are deleted then.",
              flush=True)

    def languages_line(self) -> str:
        """Who reads Russian, and the command that changes someone's language in this demo."""
        who = (f"{self._russian_reader} reads alerts in Russian, the others in English"
               if self._russian_reader else "everyone reads alerts in English")
        env = (f"REDIS_URL={_redacted(self._redis_url)} B24_WEBHOOK_URL={self.sim.webhook_url} "
               f"B24NOTIFY_KEY_PREFIX={self.namespace.prefix}")
        return (f"{who}; change one: {env} b24notify prefs set --portal {self.portal} --user ID "
                "--language ru (or en)")

    @property
    def portal(self) -> str:
        """The simulated portal's name in Redis keys, as the workers name it: the webhook's host:port."""
        return demo_portal(self.sim)


def demo_portal(sim: RunningSimulator) -> str:
    return parse_webhook_url(sim.webhook_url).netloc


def store_russian_reader(redis: Redis, namespace: DemoNamespace, portal: str) -> bool:
    """``RUSSIAN_READER`` reads Russian in this demo run (its own prefix). False if Redis said no:
    then everyone reads English, and the demo goes on."""
    try:
        PrefsStore(redis, Keys(namespace.prefix)).update(portal, RUSSIAN_READER, language="ru")
    except RedisError as exc:
        log.warning("event=demo.prefs_not_stored error=%s", type(exc).__name__)
        return False
    return True


def start_demo(stack: ExitStack, *, settings: Settings, redis_url: str, handler_url: str) -> Demo:
    """Start the simulator, the SMTP sink, the printer and the key keeper, each stopped by ``stack``.
    The activity is not started: ``Demo.start_activity`` once the web answers at ``handler_url``."""
    token = secrets.token_hex(16)
    namespace = DemoNamespace.for_run(settings)
    redis = Redis.from_url(redis_url)
    stack.callback(redis.close)
    sim = stack.enter_context(RunningSimulator(SimulatorConfig(handler_url=handler_url, application_token=token)))
    control = SimulatorControl(sim.base_url, timeout=2.0)
    stack.callback(control.close)
    printer = AlertPrinter(control)
    sink = stack.enter_context(SmtpSink(on_message=printer.on_mail))
    keys = DemoKeys(redis, namespace)
    stack.callback(keys.delete)  # runs after the printer and key keeper have stopped (stack order)
    russian = store_russian_reader(redis, namespace, demo_portal(sim))  # before any worker reads it
    reader = printer.person(RUSSIAN_READER) if russian else ""  # before the printer's thread uses it
    stop = threading.Event()
    threads = [threading.Thread(target=printer.run, args=(stop,), name="b24notify-demo-printer", daemon=True),
               threading.Thread(target=keys.keep_expiring, args=(stop,), name="b24notify-demo-keys", daemon=True)]
    for thread in threads:
        thread.start()
        stack.callback(thread.join, 10)
    stack.callback(stop.set)
    print(f"b24notify: demo — simulated portal at {sim.base_url} (control API {sim.base_url}/_sim/), "
          f"SMTP sink on {sink.url}", flush=True)
    return Demo(sim, sink, namespace, token, redis_url=redis_url, russian_reader=reader)


def run_simulate(args: argparse.Namespace) -> int:
    from b24notify.logs import setup_logging

    setup_logging("INFO")
    drain, _, capacity = args.rate_limit.partition("/")
    config = SimulatorConfig(
        host=args.host, port=args.port, handler_url=args.handler, application_token=args.application_token,
        bucket_capacity=int(capacity or 0), bucket_drain_per_second=float(drain or 0) or 2.0,
        new_card=args.new_card, seed=args.seed,
    )
    serve_forever(config, activity_interval=args.activity)
    return 0
