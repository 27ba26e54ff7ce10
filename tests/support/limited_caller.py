"""A process that makes N REST calls through the fleet-wide guard (for the shared-limiter test).

    python -m tests.support.limited_caller WEBHOOK_URL REDIS_URL KEY_PREFIX RATE CALLS
"""

from __future__ import annotations

import sys

from redis import Redis

from b24notify.keys import Keys
from b24notify.rest.budget import RateBudget
from b24notify.rest.client import RestClient
from b24notify.rest.guard import PortalGuard
from b24notify.rest.operating import OperatingBudget
from b24notify.settings import parse_webhook_url
from b24notify.settings.rates import RateLimit


def main() -> int:
    webhook_url, redis_url, prefix, rate, calls = sys.argv[1:6]
    webhook = parse_webhook_url(webhook_url)
    redis = Redis.from_url(redis_url)
    keys = Keys(prefix)
    guard = PortalGuard(RateBudget(redis, keys.budget(webhook.netloc), RateLimit.parse(rate), max_wait=60),
                        OperatingBudget(redis, keys.operating(webhook.netloc)))
    with RestClient(webhook, guard=guard) as client:
        for _ in range(int(calls)):
            client.call("user.get", {"ID": 1})
    return 0


if __name__ == "__main__":
    sys.exit(main())
