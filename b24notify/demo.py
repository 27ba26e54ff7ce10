"""The demo wiring for ``b24notify up`` with no portal configured, and ``b24notify simulate``.

The demo starts the simulator (with scripted task activity), an SMTP sink that prints each mail,
and a watcher that prints each chat message the simulator receives; it returns the environment
the web and worker processes need to talk to them.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import threading
from contextlib import ExitStack

from b24notify.simulator import RunningSimulator, SimulatorConfig, serve_forever
from b24notify.simulator.activity import run_activity
from b24notify.smtp_sink import SmtpSink, print_message

log = logging.getLogger(__name__)

DEMO_CHAT = "chat1"
DEMO_RECIPIENT = "team@example.com"
ACTIVITY_SECONDS = 4.0


def _print_chat_messages(sim: RunningSimulator, stop: threading.Event) -> None:
    seen = 0
    while not stop.wait(0.5):
        try:
            messages = sim.control.messages()
        except Exception as exc:  # the demo printer must not die with a passing hiccup
            log.debug("event=demo.messages_unavailable error=%s", type(exc).__name__)
            continue
        for message in messages[seen:]:
            text = str(message.get("message") or "")
            print(f"\n--- chat message to {message.get('dialog_id', DEMO_CHAT)} ---\n{text}\n", flush=True)
        seen = max(seen, len(messages))


def start_demo(stack: ExitStack, *, host: str, port: int, stop: threading.Event) -> dict[str, str]:
    token = secrets.token_hex(16)
    sink = stack.enter_context(SmtpSink(on_message=print_message))
    handler = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/webhooks/bitrix24"
    sim = stack.enter_context(RunningSimulator(SimulatorConfig(handler_url=handler, application_token=token)))
    for target, args in ((run_activity, (sim.webhook_url, stop, ACTIVITY_SECONDS)),
                         (_print_chat_messages, (sim, stop))):
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        stack.callback(thread.join, 5)
    stack.callback(stop.set)
    print(f"b24notify: demo — simulated portal at {sim.base_url} (control API {sim.base_url}/_sim/), "
          f"SMTP sink on {sink.url}; alerts print below", flush=True)
    return {
        "B24_WEBHOOK_URL": sim.webhook_url,
        "B24_APPLICATION_TOKEN": token,
        "NOTIFY_CHAT": DEMO_CHAT,
        "NOTIFY_EMAIL": DEMO_RECIPIENT,
        "SMTP_URL": sink.url,
        "EMAIL_FROM": "b24notify@example.com",
        "B24NOTIFY_KEY_PREFIX": "b24n-demo",
        "B24NOTIFY_QUEUE": "b24notify-demo",
    }


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--handler", default=None,
                        help="where to POST events, e.g. http://127.0.0.1:8000/webhooks/bitrix24")
    parser.add_argument("--application-token", default="sim-application-token")
    parser.add_argument("--activity", type=float, default=None, metavar="SECONDS",
                        help="play scripted task activity every SECONDS")
    parser.add_argument("--rate-limit", default="2/50", help="leaky bucket DRAIN/CAPACITY, 0/0 for none")
    parser.add_argument("--new-card", action="store_true", help="behave like the new task card (chat comments)")
    parser.add_argument("--seed", type=int, default=0)


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
