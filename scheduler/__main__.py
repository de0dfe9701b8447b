"""`python -m scheduler`: a scheduler process. Run two or more: one leads, the others
stand by and take over when its lease lapses. Stops on SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from redis import Redis

from portal import create_app
from scheduler.leader import Lease
from scheduler.loop import Scheduler
from scheduler.policy import DEFAULT_POLICY, POLICIES


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scheduler", description=__doc__)
    parser.add_argument(
        "--policy",
        choices=POLICIES,
        default=os.environ.get("PODIUM_SCHEDULER_POLICY", DEFAULT_POLICY),
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=float(os.environ.get("PODIUM_SCHEDULER_LEASE_SECONDS", "2")),
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(message)s")
    app = create_app(serve=False, migrations=False)
    # Bounded waits: a Redis that stops answering must not freeze a leader in a call.
    redis = Redis.from_url(app.config["REDIS_URL"], socket_timeout=5, socket_connect_timeout=5)
    lease = Lease(redis, ttl_seconds=args.lease_seconds, renew_seconds=args.lease_seconds / 4)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Scheduler(app, redis, lease=lease, policy=args.policy).run(stop)


if __name__ == "__main__":
    main()
