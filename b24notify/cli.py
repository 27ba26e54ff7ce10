"""``b24notify`` command line: serve, worker, sync, trace, register, deadletter, prefs, console, doctor, preview,
up, simulate."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from b24notify.i18n import LANGUAGES
from b24notify.portals.spec import require_channels
from b24notify.render.preview import PREVIEW_KINDS, preview
from b24notify.settings import ConfigError, Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(env_file=args.env_file)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from b24notify.logs import setup_logging
    from b24notify.service.app import create_app

    settings = _settings(args)
    settings.require_portal()
    setup_logging(settings.b24notify_log_level)
    app = create_app(settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=10)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from b24notify.logs import setup_logging
    from b24notify.workers.worker import run_worker

    settings = _settings(args)
    require_channels(settings)
    setup_logging(settings.b24notify_log_level)
    run_worker(settings, burst=args.burst, name=args.name)
    return 0


def cmd_worker_alive(args: argparse.Namespace) -> int:
    from b24notify.workers.alive import worker_alive

    return worker_alive(_settings(args))


def cmd_sync(args: argparse.Namespace) -> int:
    from b24notify.logs import setup_logging
    from b24notify.workers.manual import sync_now

    settings = _settings(args)
    require_channels(settings)
    setup_logging(settings.b24notify_log_level)
    return sync_now(settings, args.task, send=not args.no_send, portal=args.portal)


def cmd_register(args: argparse.Namespace) -> int:
    from b24notify.logs import setup_logging
    from b24notify.register import register_all

    settings = _settings(args)
    setup_logging(settings.b24notify_log_level)
    return register_all(settings)


def cmd_deadletter(args: argparse.Namespace) -> int:
    from b24notify.deadletter import DeadLetters, parse_age
    from b24notify.keys import Keys
    from b24notify.redis_conn import connect

    settings = _settings(args)
    dead = DeadLetters(connect(settings.redis_url), Keys(settings.b24notify_key_prefix))
    if args.action == "list":
        rows = dead.entries(args.limit)
        for row in rows:
            print(f"{row.id}  {row.dead_at:%Y-%m-%d %H:%M:%S}Z  attempts={row.attempts}  {row.reason}")
        print(f"{len(rows)} dead deliver{'y' if len(rows) == 1 else 'ies'}")
        return 0
    if args.action == "purge":
        try:
            older_than = parse_age(args.older_than) if args.older_than else None
        except ValueError as exc:
            print(f"b24notify: deadletter purge --older-than: {exc}", file=sys.stderr)
            return 2
        purged = dead.purge(older_than)
        print(f"{len(purged)} purged from the dead-letter list")
        return 0
    if not args.all and not args.ids:
        print("b24notify: deadletter replay needs delivery ids or --all", file=sys.stderr)
        return 2
    replayed = dead.replay(None if args.all else args.ids)
    for delivery in replayed:
        print(f"queued again: {delivery}")
    print(f"{len(replayed)} queued again")
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError

    from b24notify.keys import Keys
    from b24notify.portals.directory import PortalDirectory
    from b24notify.redis_conn import connect
    from b24notify.trace import TRACE_MAXLEN, TRACE_TTL_SECONDS, TraceLog, format_timeline

    def refuse(message: str) -> int:
        print(f"b24notify: trace: {message}", file=sys.stderr)
        return 2

    settings = _settings(args)
    keys = Keys(settings.b24notify_key_prefix)
    redis = connect(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    try:
        directory = PortalDirectory(settings, redis, keys)
        configured = directory.portals()
        if args.portal is None:
            if len(configured) != 1:
                return refuse(f"say which portal with --portal HOST: one of {', '.join(configured) or '(none)'}")
            portal = configured[0]
        else:
            portal = args.portal.strip().lower()
            if directory.get(portal) is None:
                # What was given may be the webhook URL, with its secret: never echo a URL.
                shown = "(give it as host[:port], not a URL)" if any(c in portal for c in "/@?#") else portal
                return refuse(f"unknown portal {shown}; configured portals: {', '.join(configured) or 'none'}")
        trace = TraceLog(redis, keys)
        task_id: int | None = args.task
        if args.result is not None:
            task_id = trace.find_result(portal, args.result)
            if task_id is None:
                print(f"result {args.result}: no step of the trace of {portal} names it")
                return 1
            print(f"result {args.result} is a result of task {task_id}")
        assert task_id is not None
        entries = trace.timeline(portal, task_id, args.limit)
    except RedisError as exc:
        print(f"b24notify: trace: Redis did not answer: {type(exc).__name__}", file=sys.stderr)
        return 1
    finally:
        redis.close()
    if not entries:
        print(f"task {task_id}: no steps in the trace of {portal} (it keeps the last {TRACE_MAXLEN:,} steps, "
              f"for {TRACE_TTL_SECONDS // 86400} days after the last one)")
        return 1
    print(f"task {task_id} on {portal}: {len(entries)} step{'' if len(entries) == 1 else 's'}, oldest first")
    for line in format_timeline(reversed(entries)):
        print(line)
    return 0


def cmd_prefs(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError

    from b24notify.keys import Keys
    from b24notify.portals.directory import PortalDirectory
    from b24notify.prefs import Prefs, PrefsStore, PrefsUpdate, parse_user_id, table
    from b24notify.redis_conn import connect

    def refuse(message: str) -> int:
        print(f"b24notify: prefs {args.action}: {message}", file=sys.stderr)
        return 2

    change: tuple[int, PrefsUpdate] | None = None
    if args.action == "set":  # every value is checked before Redis is touched: a bad one writes nothing
        if args.mute and args.unmute:
            return refuse("--mute and --unmute together: give one of them")
        try:
            change = parse_user_id(args.user), PrefsUpdate.parse(
                muted=True if args.mute else False if args.unmute else None,
                kinds=args.kinds, via=args.via, language=args.language)
        except ValueError as exc:
            return refuse(f"--{exc}")
        if change[1].empty:
            return refuse("nothing to set: give --mute, --unmute, --kinds, --via or --language")
    settings = _settings(args)
    keys = Keys(settings.b24notify_key_prefix)
    redis = connect(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        directory = PortalDirectory(settings, redis, keys)
        portal = args.portal.strip().lower()
        if directory.get(portal) is None:
            configured = ", ".join(directory.portals()) or "none"
            # What was given may be the webhook URL, with its secret: never echo a URL.
            shown = "(give it as host[:port], not a URL)" if any(c in portal for c in "/@?#") else portal
            return refuse(f"unknown portal {shown}; configured portals: {configured}")
        store = PrefsStore(redis, keys)
        if change is None:
            rows: dict[int, Prefs] = store.all(portal)
        else:
            user_id, update = change
            rows = {user_id: store.apply(portal, user_id, update)}
    except RedisError as exc:
        print(f"b24notify: prefs {args.action}: Redis did not answer: {type(exc).__name__}", file=sys.stderr)
        return 1
    finally:
        redis.close()
    for line in table(rows):
        print(line)
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    print(preview(args.language, args.kind, args.count))
    return 0


def cmd_console_hash_password(args: argparse.Namespace) -> int:
    """Print B24NOTIFY_CONSOLE_PASSWORD_HASH for a password typed twice (or one line of stdin)."""
    import getpass

    from b24notify.settings.console import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Console password: ")
        if getpass.getpass("Again: ") != password:
            print("b24notify: console hash-password: the two passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        print(hash_password(password))
    except ValueError as exc:
        print(f"b24notify: console hash-password: the password {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from b24notify.doctor import run_doctor

    return run_doctor(_settings(args))


# Third-party modules that only the devtools need; the `devtools` extra installs them. `up` and
# `simulate` live in b24notify.devtools and are imported inside the command, so serve and worker
# (the product's image, installed without the extra) never load them.
DEVTOOLS_EXTRA_MODULES = frozenset({"aiosmtpd"})


def _devtools_extra_missing(command: str, exc: ModuleNotFoundError) -> int:
    if (exc.name or "").partition(".")[0] not in DEVTOOLS_EXTRA_MODULES:
        raise exc
    print(f"b24notify: `{command}` needs the devtools extra ({exc.name} is not installed): "
          "pip install 'b24notify[devtools]'", file=sys.stderr)
    return 2


def cmd_up(args: argparse.Namespace) -> int:
    try:
        from b24notify.devtools.launcher import run_up

        return run_up(env_file=args.env_file, host=args.host, port=args.port, workers=args.workers,
                      demo=args.demo)
    except ModuleNotFoundError as exc:  # the demo (no portal configured) needs the SMTP sink
        return _devtools_extra_missing("b24notify up", exc)


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        from b24notify.devtools.demo import run_simulate
    except ModuleNotFoundError as exc:
        return _devtools_extra_missing("b24notify simulate", exc)
    return run_simulate(args)


def _add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Declared here, not in b24notify.devtools, so that building the parser (every command)
    imports no devtools."""
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b24notify",
        description="Alerts the moment a Bitrix24 task result appears or is closed.",
        epilog="Configuration comes from the environment (see README: Configuration).",
    )
    parser.add_argument("--env-file", default=None, help="read settings from this file too (KEY=value lines)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web endpoint that Bitrix24 posts events to")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run one worker: syncs tasks and delivers notifications")
    worker.add_argument("--burst", action="store_true", help="work off what is due now, then exit")
    worker.add_argument("--name", default=None, help="worker name shown by `rq info`")
    worker.set_defaults(func=cmd_worker)

    alive = sub.add_parser("worker-alive", help="exit 0 if a worker on this host has a fresh heartbeat "
                                                "(the container healthcheck)")
    alive.set_defaults(func=cmd_worker_alive)

    sync = sub.add_parser("sync", help="fetch, diff and notify one task now; print the diff")
    sync.add_argument("--task", type=int, required=True, help="the task id")
    sync.add_argument("--portal", help="the portal (host[:port]) when several are served")
    sync.add_argument("--no-send", action="store_true", help="queue the notifications but do not send them")
    sync.set_defaults(func=cmd_sync)

    register = sub.add_parser("register", help="bind the task events (app mode) or print the webhook setup steps")
    register.set_defaults(func=cmd_register)

    deadletter = sub.add_parser("deadletter", help="list, replay or purge deliveries that failed for good")
    deadletter_sub = deadletter.add_subparsers(dest="action", required=True)
    listing = deadletter_sub.add_parser("list", help="show dead deliveries with their reasons")
    listing.add_argument("--limit", type=int, default=100)
    replay = deadletter_sub.add_parser("replay", help="queue dead deliveries again")
    replay.add_argument("ids", nargs="*", help="delivery ids as `deadletter list` shows them")
    replay.add_argument("--all", action="store_true", help="replay every dead delivery")
    purge = deadletter_sub.add_parser("purge", help="take dead deliveries off the list (all, or --older-than)")
    purge.add_argument("--older-than", metavar="AGE", help="only those dead longer than AGE: 7d, 12h, 30m")
    deadletter.set_defaults(func=cmd_deadletter)

    trace = sub.add_parser("trace", help="print a task's trace: events, syncs, deliveries, replays (oldest first)",
                           description="Every recorded step of one task, oldest first (the last line is the "
                                       "latest): events received, syncs (trigger, REST requests, outcome, the "
                                       "diff's result ids), each delivery attempt and dead-letter replay.")
    trace.add_argument("--portal", metavar="HOST", help="the portal (host[:port]); default: the only one configured")
    which = trace.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", type=int, metavar="ID", help="the task id")
    which.add_argument("--result", type=int, metavar="ID", help="a result id: find its task, print the task's trace")
    trace.add_argument("--limit", type=int, default=500, help="at most this many steps, the latest (default 500)")
    trace.set_defaults(func=cmd_trace)

    prefs = sub.add_parser(
        "prefs", help="per-person preferences: mute, kinds, channels, language",
        description="Preferences of one person on one portal. A change applies from the next sync "
                    "after the command returns (every sync reads them).")
    prefs_sub = prefs.add_subparsers(dest="action", required=True)
    portal_help = "the portal as `doctor` names it: the webhook URL's host[:port], or an app install's domain"
    prefs_set = prefs_sub.add_parser(
        "set", help="change one person's preferences (the options not given stay as they are)",
        description="Change one person's preferences; the options not given stay as they are. "
                    "Applies from the next sync after this command returns.")
    prefs_set.add_argument("--portal", required=True, metavar="HOST", help=portal_help)
    prefs_set.add_argument("--user", required=True, metavar="ID", help="the person's Bitrix24 user id")
    prefs_set.add_argument("--mute", action="store_true", help="tell this person nothing")
    prefs_set.add_argument("--unmute", action="store_true", help="undo --mute")
    prefs_set.add_argument("--kinds", metavar="KINDS",
                           help="the changes this person is told about: new,closed,edited,removed; all (the default)")
    prefs_set.add_argument("--via", metavar="CHANNELS",
                           help="the channels accepted for personal alerts: chat (personal notification in "
                                "Bitrix24), email; all (the default: whatever the route says)")
    prefs_set.add_argument("--language", metavar="LANG", help="en, ru; default (the portal's language)")
    prefs_list = prefs_sub.add_parser("list", help="show the preferences set on a portal")
    prefs_list.add_argument("--portal", required=True, metavar="HOST", help=portal_help)
    prefs.set_defaults(func=cmd_prefs)

    console = sub.add_parser("console", help="the operator console at /console (README: Console)")
    console_sub = console.add_subparsers(dest="action", required=True)
    hashing = console_sub.add_parser(
        "hash-password", help="print a B24NOTIFY_CONSOLE_PASSWORD_HASH (the password: typed twice, or stdin)",
        description="Read a password (typed twice at a terminal, else the first line of stdin) and print its "
                    "PBKDF2-SHA256 hash for B24NOTIFY_CONSOLE_PASSWORD_HASH. Needs no other setting.")
    hashing.set_defaults(func=cmd_console_hash_password)

    doctor = sub.add_parser("doctor", help="check config, Redis, the portal and the queues")
    doctor.set_defaults(func=cmd_doctor)

    sample = sub.add_parser("preview", help="print the chat message and the e-mail of a sample alert")
    sample.add_argument("--language", choices=LANGUAGES, default="en")
    sample.add_argument("--kind", choices=PREVIEW_KINDS, default="new")
    sample.add_argument("--count", type=int, default=1, help="results in the sample (2 or more: a digest)")
    sample.set_defaults(func=cmd_preview)

    up = sub.add_parser("up", help="web + workers on this machine; a demo portal when none is configured")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=None,
                    help="the web's port (default 8000; the demo takes a free one if 8000 is busy)")
    up.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    up.add_argument("--demo", action="store_true", help="force the simulator demo even if a portal is configured")
    up.set_defaults(func=cmd_up)

    simulate = sub.add_parser("simulate", help="run the Bitrix24 portal simulator")
    _add_simulate_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"b24notify: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
