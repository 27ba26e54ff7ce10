"""A stand-in for a worker process in the token-refresh race: builds the worker's own contexts from
the environment, waits for a shared start time, then makes one REST call to the app portal.

    python -m tests.support.refresh_probe PORTAL START_AT_UNIX
"""

from __future__ import annotations

import sys
import time

from redis import Redis

from b24notify.settings import load_settings
from b24notify.workers.context import WorkerContexts


def main(portal: str, start_at: float) -> int:
    settings = load_settings()
    contexts = WorkerContexts(settings, Redis.from_url(settings.redis_url))
    try:
        ctx = contexts.get(portal)
        if ctx is None:
            print("no such portal")
            return 2
        time.sleep(max(0.0, start_at - time.time()))
        ctx.client.call("user.get", {"ID": 1})
        print("ok")
        return 0
    finally:
        contexts.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2])))
