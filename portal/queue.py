"""The portal's Redis connection and the grader's queue (the keys' names: `portal/keys.py`).

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

from portal import keys

# What a grader worker runs: nothing else, whatever a job names (grader/__main__.py).
GRADER_JOBS = frozenset(
    {"grader.jobs.score_submission", "grader.jobs.score_reproduction", "grader.jobs.rescore_round"}
)


def grader_queue(connection: Redis) -> Queue:
    """The grader's RQ queue. Jobs carry JSON (never pickles) and name their function by
    its dotted path, which the worker checks against GRADER_JOBS."""
    return Queue(keys.GRADER_QUEUE, connection=connection, serializer=JSONSerializer)


# Connections one portal process opens to Redis at most; more callers at once wait for
# one to be free (a gevent worker serves hundreds of requests concurrently).
MAX_REDIS_CONNECTIONS = 50


# Connections for calls that block on Redis for as long as a client waits (a served
# model's requests and replies): a pool of their own, so that they never starve the
# others, and without the socket timeout (redis-py's default is 5 s) that would cut
# such a wait short.
MAX_REDIS_WAITS = 1000


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
    app.extensions["redis_waits"] = (
        Redis(
            connection_pool=BlockingConnectionPool.from_url(
                url, max_connections=MAX_REDIS_WAITS, timeout=20, socket_timeout=None
            )
        )
        if url
        else None
    )


def redis_waits() -> Redis:
    """The connection for calls that block as long as a client waits."""
    connection = current_app.extensions.get("redis_waits")
    if connection is None:
        raise RuntimeError("REDIS_URL is not configured")
    return connection


def redis_connection() -> Redis:
    connection = current_app.extensions.get("redis")
    if connection is None:
        raise RuntimeError("REDIS_URL is not configured")
    return connection


def wake_scheduler(connection: Redis) -> None:
    """Ask the scheduler for a pass now rather than at its next tick."""
    pipe = connection.pipeline()
    pipe.lpush(keys.SCHEDULER_WAKE, 1)
    pipe.ltrim(keys.SCHEDULER_WAKE, 0, 0)
    pipe.execute()
