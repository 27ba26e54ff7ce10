"""The demo wiring for ``b24notify up`` with no portal configured, and ``b24notify simulate``.

The demo starts the simulator, an SMTP sink and a printer that shows each chat message the
simulator receives and each mail the sink receives, in the order they arrived. The scripted task
activity starts only once the web answers (``start_activity``), so no event of it is lost. The
demo's keys live under a prefix and a queue of its own run, carry a TTL while it runs (a demo
killed outright leaves nothing behind for ever) and are deleted when it stops.
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

import httpx
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job

from b24notify.devtools.simulator import RunningSimulator, SimulatorConfig, SimulatorControl, serve_forever
from b24notify.devtools.simulator.activity import run_activity
from b24notify.devtools.smtp_sink import SmtpSink, print_message
from b24notify.settings import Settings

log = logging.getLogger(__name__)

DEMO_CHAT = "chat1"
DEMO_RECIPIENT = "team@example.com"
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
    """Prints what the demo's portal receives (chat messages) and its mailbox (e-mails), each with the
    time it arrived. Chat messages are read from the simulator every ``PRINT_POLL_SECONDS``; mails
    wait ``MAIL_HOLD_SECONDS`` so that a chat message that arrived first is printed first."""

    def __init__(self, control: SimulatorControl, out: TextIO | None = None) -> None:
        self._control = control
        self._out = out or sys.stdout
        self._lock = threading.Lock()
        self._mails: list[tuple[float, datetime, EmailMessage]] = []
        self._chats_seen = 0

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

    def _print_chat(self, message: dict[str, Any]) -> None:
        try:
            arrived = f"{datetime.fromisoformat(str(message['created_at'])).astimezone():%H:%M:%S}"
        except (KeyError, ValueError):
            arrived = "--:--:--"
        text = str(message.get("message") or "")
        print(f"\n--- {arrived} chat message to {message.get('dialog_id', DEMO_CHAT)} ---\n{text}\n"
              f"{'-' * 72}", file=self._out, flush=True)


class Demo:
    """A running demo: what the web and workers need (``env``), and its parts to start and stop."""

    def __init__(self, sim: RunningSimulator, sink: SmtpSink, namespace: DemoNamespace, token: str) -> None:
        self.sim = sim
        self.sink = sink
        self.namespace = namespace
        self._token = token
        self._activity_stop = threading.Event()
        self._activity: threading.Thread | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            "B24_WEBHOOK_URL": self.sim.webhook_url,
            "B24_APPLICATION_TOKEN": self._token,
            "NOTIFY_CHAT": DEMO_CHAT,
            "NOTIFY_EMAIL": DEMO_RECIPIENT,
            "SMTP_URL": self.sink.url,
            "EMAIL_FROM": "b24notify@example.com",
            "B24NOTIFY_KEY_PREFIX": self.namespace.prefix,
            "B24NOTIFY_QUEUE": self.namespace.queue,
        }

    def start_activity(self) -> None:
        """Start the scripted activity: call it once the web answers, or its first events are lost."""
        self._activity = threading.Thread(target=run_activity, args=(self.sim.webhook_url, self._activity_stop,
                                                                      ACTIVITY_SECONDS),
                                          name="b24notify-demo-activity", daemon=True)
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
              "each alert prints below as a chat message and an e-mail, the first within a minute.\n"
              f"b24notify: look inside the portal: curl {sim}/_sim/messages (chat), {sim}/_sim/calls (REST calls), "
              f"POST {sim}/_sim/faults (make calls fail); the web is {web_url}.\n"
              "b24notify: your own portal: set B24_WEBHOOK_URL, B24_APPLICATION_TOKEN and NOTIFY_CHAT or NOTIFY_EMAIL "
              "(README \"Register b24notify in Bitrix24\", \"Configuration\"), then make run again.\n"
              f"b24notify: Ctrl-C stops; this demo's Redis keys ({self.namespace.prefix}:*) are deleted then.",
              flush=True)


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
    stop = threading.Event()
    threads = [threading.Thread(target=printer.run, args=(stop,), name="b24notify-demo-printer", daemon=True),
               threading.Thread(target=keys.keep_expiring, args=(stop,), name="b24notify-demo-keys", daemon=True)]
    for thread in threads:
        thread.start()
        stack.callback(thread.join, 10)
    stack.callback(stop.set)
    print(f"b24notify: demo — simulated portal at {sim.base_url} (control API {sim.base_url}/_sim/), "
          f"SMTP sink on {sink.url}", flush=True)
    return Demo(sim, sink, namespace, token)


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
