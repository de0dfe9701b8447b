"""`python -m grader`: a grader worker. Jobs run in this process (RQ's SimpleWorker),
so the labels a round needs are opened once and kept, not once per submission. A
thread queues again every submission left waiting by a lost job."""

from __future__ import annotations

import logging
import os
import socket
import threading

from redis import Redis
from rq import Queue, SimpleWorker

from grader import jobs
from portal.queue import GRADER_QUEUE

log = logging.getLogger("grader")


def _sweeper(stop: threading.Event) -> None:
    while not stop.wait(30):
        try:
            if count := jobs.sweep():
                log.warning("queued %d submissions again that were left waiting", count)
        except Exception:
            log.exception("sweep failed")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s grader %(message)s")
    redis = Redis.from_url(os.environ["REDIS_URL"])
    jobs.app()  # fail now, not at the first job, when the configuration is wrong
    stop = threading.Event()
    threading.Thread(target=_sweeper, args=(stop,), name="sweep", daemon=True).start()
    name = f"grader-{socket.gethostname()}-{os.getpid()}"
    try:
        SimpleWorker([Queue(GRADER_QUEUE, connection=redis)], connection=redis, name=name).work()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
