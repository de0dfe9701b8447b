"""The portal's Redis connection, the grader's queue, and the names of Podium's keys.

Redis carries queues, wake-ups and heartbeats only; the database is the source of
truth, so anything lost here is rebuilt from it. Only server-side processes (portal,
scheduler, grader) hold the Redis password: node agents take their work over HTTP
(`portal/node_work.py`).
"""

from __future__ import annotations

from flask import Flask, current_app
from redis import BlockingConnectionPool, Redis
from rq import Queue
from rq.serializers import JSONSerializer

SCHEDULER_WAKE_KEY = "podium:scheduler:wake"
SCHEDULER_HEARTBEAT_KEY = "podium:scheduler:heartbeat"
GRADER_QUEUE = "grader"
# What a grader worker runs: nothing else, whatever a job names (grader/__main__.py).
GRADER_JOBS = frozenset({"grader.jobs.score_submission", "grader.jobs.rescore_round"})


def node_work_key(node_name: str) -> str:
    """A node's queue of work: a list of JSON jobs it takes over HTTP."""
    return f"podium:node:{node_name}:work"


def node_wake_channel(node_name: str) -> str:
    """Published when work is queued for the node, waking its waiting poll."""
    return f"podium:node:{node_name}:wake"


def node_job_key(job_id: str) -> str:
    """A node job's state (queued, taken, done) and result."""
    return f"podium:nodejob:{job_id}"


def code_upload_key(user_id: int, digest: str) -> str:
    """That a user uploaded a code archive (for a day): what lets them start a session of
    it, besides a session of theirs that runs it already."""
    return f"podium:upload:{user_id}:{digest}"


def grader_queue(connection: Redis) -> Queue:
    """The grader's RQ queue. Jobs carry JSON (never pickles) and name their function by
    its dotted path, which the worker checks against GRADER_JOBS."""
    return Queue(GRADER_QUEUE, connection=connection, serializer=JSONSerializer)


# Connections one portal process opens to Redis at most; more callers at once wait for
# one to be free (a gevent worker serves hundreds of requests concurrently).
MAX_REDIS_CONNECTIONS = 50


def init_app(app: Flask) -> None:
    url = app.config.get("REDIS_URL")
    app.extensions["redis"] = (
        Redis(
            connection_pool=BlockingConnectionPool.from_url(
                url, max_connections=MAX_REDIS_CONNECTIONS, timeout=20
            )
        )
        if url
        else None
    )


def redis_connection() -> Redis:
    connection = current_app.extensions.get("redis")
    if connection is None:
        raise RuntimeError("REDIS_URL is not configured")
    return connection


def wake_scheduler(connection: Redis) -> None:
    """Ask the scheduler for a pass now rather than at its next tick."""
    pipe = connection.pipeline()
    pipe.lpush(SCHEDULER_WAKE_KEY, 1)
    pipe.ltrim(SCHEDULER_WAKE_KEY, 0, 0)
    pipe.execute()
