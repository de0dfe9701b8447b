"""`python -m scheduler`: run the scheduling loop until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading

from redis import Redis

from portal import create_app
from scheduler.loop import Scheduler


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(message)s")
    app = create_app()
    redis = Redis.from_url(app.config["REDIS_URL"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Scheduler(app, redis).run(stop)


if __name__ == "__main__":
    main()
