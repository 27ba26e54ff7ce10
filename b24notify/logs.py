"""Logging set-up for every entry point: one line per event, key=value fields, no secrets.

httpx logs every request URL at INFO, and the incoming-webhook URL carries its secret code, so its
loggers are held at WARNING here.
"""

from __future__ import annotations

import logging
import sys

# One line per job from RQ and one per SMTP command from the demo's sink drown our own event lines
# (103 of 376 lines of a demo run); they come back with B24NOTIFY_LOG_LEVEL=DEBUG.
CHATTY_LOGGERS = ("rq.worker", "rq.job", "rq.scheduler", "mail.log")


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Apprise and urllib3 (under it) log the URLs they call at DEBUG and INFO, and an Apprise URL
    # carries its service's token.
    for noisy in ("httpx", "httpcore", "apprise", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(rq_logging_level(level))


def rq_logging_level(level: str) -> str:
    """The level for RQ's loggers: ours at DEBUG, else ours but at least WARNING.
    ``Worker.work(logging_level=…)`` sets it on RQ's loggers again (and hands it to the scheduler
    process), so pass this one there, never our own level."""
    ours = logging.getLevelName(level.upper())
    if not isinstance(ours, int):
        return "WARNING"
    return str(logging.getLevelName(ours if ours <= logging.DEBUG else max(ours, logging.WARNING)))
