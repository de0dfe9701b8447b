"""`python -m grader`: an RQ worker on the `grader` queue."""

from __future__ import annotations

import logging
import os
import socket

from redis import Redis
from rq import Queue, Worker

from portal.queue import GRADER_QUEUE


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s grader %(message)s")
    redis = Redis.from_url(os.environ["REDIS_URL"])
    name = f"grader-{socket.gethostname()}-{os.getpid()}"
    Worker([Queue(GRADER_QUEUE, connection=redis)], connection=redis, name=name).work()


if __name__ == "__main__":
    main()
