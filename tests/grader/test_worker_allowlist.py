"""The grader worker holds the key to every round's labels: whatever reaches its queue,
it runs only its scoring jobs, and never unpickles anything."""

from __future__ import annotations

import pickle
import zlib

from rq import Queue
from rq.job import JobStatus

from grader.__main__ import worker
from portal.keys import GRADER_QUEUE
from portal.queue import grader_queue


def run_once(redis) -> None:
    worker(redis, "grader-test").work(burst=True, with_scheduler=False)


def test_a_job_naming_another_function_fails_without_running(redis, tmp_path):
    planted = tmp_path / "planted"
    job = grader_queue(redis).enqueue("os.system", f"touch {planted}")
    run_once(redis)
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert not planted.exists()
    assert "the grader runs no 'os.system'" in (job.latest_result().exc_string or "")


def test_a_scoring_job_with_arguments_other_than_ids_fails(redis, tmp_path):
    job = grader_queue(redis).enqueue("grader.jobs.score_submission", "1; drop")
    run_once(redis)
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert "ids only" in (job.latest_result().exc_string or "")


def test_a_pickled_job_is_never_unpickled(redis, tmp_path):
    planted = tmp_path / "planted"

    class Plant:
        def __reduce__(self):
            return (open, (str(planted), "w"))

    # Written as RQ's default (pickle) serializer would, by whoever could reach the queue.
    pickled = Queue(GRADER_QUEUE, connection=redis).enqueue(print, Plant())
    pickle.loads(zlib.decompress(redis.hget(pickled.key, "data")))  # RQ's own encoding
    planted.unlink()  # reading it planted the file: that is what reading a pickle does
    run_once(redis)
    assert not planted.exists()
    assert pickled.get_status(refresh=True) != JobStatus.FINISHED


def test_a_scoring_job_by_name_runs(redis, app, monkeypatch):
    ran = []
    monkeypatch.setattr("grader.jobs.score_submission", lambda submission_id: ran.append(1))
    job = grader_queue(redis).enqueue("grader.jobs.score_submission", 42)
    run_once(redis)
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert ran == [1]
