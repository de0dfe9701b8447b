"""Work for node agents: starts, stops and execs, queued in Redis by the server side
and taken by each agent over HTTP with its own node token (`/internal/nodes/work`).

Node hosts hold no Redis credential at all: whoever runs one can take only its own
node's jobs, and can neither read another node's queue nor write to any queue. A job
is JSON, `{"id", "kind", "session_id", ...}`, and an agent runs only the kinds it
knows (`nodes/jobs.py`). Each job's state lives beside it (`keys.node_job`): queued,
taken, then done with the agent's result, so the scheduler can tell a start that
Redis lost from one a node took and never ran, and `podium exec` can wait for its
output.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from redis import Redis

from portal import keys

START, STOP, EXEC, CHECKPOINT = "start", "stop", "exec", "checkpoint"
KINDS = (START, STOP, EXEC, CHECKPOINT)
QUEUED, TAKEN, DONE = "queued", "taken", "done"
STATE_TTL_SECONDS = 86400
MAX_TAKEN = 20

# Queue the job, count it, and wake the node's waiting poll, in one step: a poll that
# read the count before this runs sees a higher one published and looks again.
_PUSH = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[3])
local seq = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[4], seq)
return seq
"""


_seq_key = keys.node_work_seq


def start_job_id(session_id: int) -> str:
    return f"start-{session_id}"


def push(
    redis: Redis,
    node_name: str,
    kind: str,
    *,
    job_id: str | None = None,
    ttl: int = STATE_TTL_SECONDS,
    **fields: Any,
) -> str:
    """Queue a job for `node_name`; returns its id."""
    if kind not in KINDS:
        raise ValueError(f"unknown node job kind {kind!r}")
    job_id = job_id or f"{kind}-{uuid.uuid4().hex}"
    job = {"id": job_id, "kind": kind, **fields}
    state = {"node": node_name, "state": QUEUED}
    redis.eval(
        _PUSH,
        3,
        keys.node_job(job_id),
        keys.node_work(node_name),
        _seq_key(node_name),
        json.dumps(state),
        ttl,
        json.dumps(job),
        keys.node_wake(node_name),
    )
    return job_id


def sequence(redis: Redis, node_name: str) -> int:
    """How many jobs were ever queued for the node: a poll waits for it to grow."""
    return int(redis.get(_seq_key(node_name)) or 0)


def take(redis: Redis, node_name: str, limit: int = MAX_TAKEN) -> list[dict[str, Any]]:
    """The node's next jobs, marked taken."""
    raw: list = redis.lpop(keys.node_work(node_name), limit) or []  # type: ignore[assignment]
    jobs = []
    for item in raw:
        try:
            jobs.append(json.loads(item))
        except ValueError:
            continue
    if jobs:
        pipe = redis.pipeline()
        for job in jobs:
            pipe.set(
                keys.node_job(job["id"]),
                json.dumps({"node": node_name, "state": TAKEN, "taken_at": time.time()}),
                keepttl=True,
                xx=True,
            )
        pipe.execute()
    return jobs


def state(redis: Redis, job_id: str) -> dict[str, Any] | None:
    raw = redis.get(keys.node_job(job_id))
    return json.loads(raw) if raw else None


def complete(redis: Redis, node_name: str, job_id: str, result: dict[str, Any]) -> bool:
    """Record a job's result; only the node the job was queued for may."""
    current = state(redis, job_id)
    if current is None or current.get("node") != node_name:
        return False
    done = {"node": node_name, "state": DONE, "result": result}
    redis.set(keys.node_job(job_id), json.dumps(done), keepttl=True)
    return True


def discard(redis: Redis, node_name: str) -> None:
    """Forget a removed node's queue."""
    redis.delete(keys.node_work(node_name), _seq_key(node_name))


def wait_done(redis: Redis, job_id: str, timeout: float) -> dict[str, Any] | None:
    """The job's result once the node has done it, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = state(redis, job_id)
        if current is not None and current.get("state") == DONE:
            return current.get("result") or {}
        time.sleep(0.05)
    return None
