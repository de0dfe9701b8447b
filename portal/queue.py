"""The portal's Redis connection and the queues it feeds.

Redis carries queues, wake-ups and heartbeats only; the database is the source of
truth, so anything lost here is rebuilt from it.
"""

from __future__ import annotations

from flask import Flask, current_app
from redis import BlockingConnectionPool, Redis

SCHEDULER_WAKE_KEY = "podium:scheduler:wake"
SCHEDULER_HEARTBEAT_KEY = "podium:scheduler:heartbeat"
GRADER_QUEUE = "grader"


def node_queue_name(node_name: str) -> str:
    return f"node.{node_name}"


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
