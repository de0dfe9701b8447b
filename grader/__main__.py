"""`python -m grader`: a grader worker. Jobs run in this process (RQ's SimpleWorker),
so the labels a round needs are opened once and kept, not once per submission. A
thread queues again every submission left waiting by a lost job.

The worker holds the key that opens every round's labels, so it runs nothing but the
scoring jobs it knows: jobs are JSON (a pickle would run code as it is read), and one
naming any other function fails without running.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta

from redis import Redis
from rq import SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from grader import jobs
from portal.queue import GRADER_JOBS, grader_queue

log = logging.getLogger("grader")


class UnknownJob(Exception):
    pass


class GraderJob(Job):
    """A job that runs only when it names a scoring function with plain arguments."""

    def perform(self):
        if self.func_name not in GRADER_JOBS or self.instance is not None:
            raise UnknownJob(f"the grader runs no {self.func_name!r}")
        if self.kwargs or not all(type(arg) is int for arg in self.args):
            raise UnknownJob("grader jobs take ids only")
        return super().perform()


def _sweeper(stop: threading.Event) -> None:
    """Queue again what waits for scoring longer than a sweep's period (its job lost
    with Redis, say): every PODIUM_GRADER_SWEEP_SECONDS (30)."""
    period = float(os.environ.get("PODIUM_GRADER_SWEEP_SECONDS") or 30)
    while not stop.wait(period):
        try:
            if count := jobs.sweep(timedelta(seconds=period)):
                log.warning("queued %d submissions again that were left waiting", count)
        except Exception:
            log.exception("sweep failed")


def worker(redis: Redis, name: str) -> SimpleWorker:
    return SimpleWorker(
        [grader_queue(redis)],
        connection=redis,
        name=name,
        job_class=GraderJob,
        serializer=JSONSerializer,
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s grader %(message)s")
    redis = Redis.from_url(os.environ["REDIS_URL"])
    jobs.app()  # fail now, not at the first job, when the configuration is wrong
    stop = threading.Event()
    threading.Thread(target=_sweeper, args=(stop,), name="sweep", daemon=True).start()
    name = f"grader-{socket.gethostname()}-{os.getpid()}"
    try:
        worker(redis, name).work()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
