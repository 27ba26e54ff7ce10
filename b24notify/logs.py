"""Logging set-up for every entry point: one line per event, key=value fields, no secrets.

httpx logs every request URL at INFO, and the incoming-webhook URL carries its secret code, so its
loggers are held at WARNING here.
"""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if root.level > logging.DEBUG:
        # One line per job from RQ and one per SMTP command from the demo's sink drown our own
        # event lines; they come back with B24NOTIFY_LOG_LEVEL=DEBUG.
        for chatty in ("rq.worker", "rq.scheduler", "mail.log"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
