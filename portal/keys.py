"""Every name Podium gives a Redis key, channel or queue, in one place.

Redis carries queues, wake-ups, heartbeats and caches only: the database is the
source of truth, and whatever is lost here is rebuilt from it. Everything Podium keeps
in Redis starts with `podium:`, but for RQ's own keys (`rq:*`, which RQ names in
one place of its own) and the grader's queue, which RQ prefixes.
"""

from __future__ import annotations

PREFIX = "podium:"

# The scheduler: a push asks for a pass now; its heartbeat says it is alive; the
# leader key elects the one instance that places sessions.
SCHEDULER_WAKE = "podium:scheduler:wake"
SCHEDULER_HEARTBEAT = "podium:scheduler:heartbeat"
SCHEDULER_LEADER = "podium:scheduler:leader"

# The grader's RQ queue (RQ stores it as `rq:queue:grader`).
GRADER_QUEUE = "grader"

# Rate-limit counters (flask-limiter's key prefix), shared by every portal worker.
RATE_LIMITS = "podium:limits"


def node_work(node_name: str) -> str:
    """A node's queue of work: a list of JSON jobs it takes over HTTP."""
    return f"podium:node:{node_name}:work"


def node_work_seq(node_name: str) -> str:
    """How many jobs were ever queued for the node: its polls' cursor."""
    return f"podium:node:{node_name}:work:seq"


def node_wake(node_name: str) -> str:
    """Channel published when work is queued for the node, waking its waiting poll."""
    return f"podium:node:{node_name}:wake"


def node_job(job_id: str) -> str:
    """A node job's state (queued, taken, done) and result."""
    return f"podium:nodejob:{job_id}"


def code_upload(user_id: int, digest: str) -> str:
    """That a user uploaded a code archive (for a day): what lets them start a session of
    it, besides a session of theirs that runs it already."""
    return f"podium:upload:{user_id}:{digest}"


def code_uploads(user_id: int) -> str:
    """The sizes of the code archives a user uploaded in the last day that no session of
    theirs runs yet (digest -> bytes): what counts against their code quota beside the
    archives their sessions run."""
    return f"podium:uploads:{user_id}"


def code_upload_lock(user_id: int) -> str:
    """Held while one of a user's code uploads is checked against the quota, stored and
    counted: two uploads at once cannot both take the same room."""
    return f"podium:uploads:{user_id}:lock"


def board(round_id: int) -> str:
    """The channel a round's leaderboard changes are published on."""
    return f"podium:lb:{round_id}"


def board_part(round_id: int, part: str) -> str:
    """One of the keys of a round's leaderboard cache (`competitions/boards.py`)."""
    return f"podium:lb:{round_id}:{part}"


def team_submissions(team_id: int) -> str:
    """The channel a competition team's submissions' changes are published on."""
    return f"podium:team:{team_id}"


def team_version(team_id: int) -> str:
    """The count of those changes: what the channel publishes."""
    return f"podium:teamversion:{team_id}"


# What one subscription per portal process listens to (`portal/live.py`).
LIVE_PATTERNS = ("podium:lb:*", "podium:node:*:wake", "podium:team:*")


def serve_queue(server_id: int) -> str:
    """A server's requests waiting for a replica: a list of JSON {id, body}."""
    return f"podium:serve:{server_id}:queue"


def serve_reply(request_id: str) -> str:
    """The answer to one prediction request, pushed by the replica that took it."""
    return f"podium:serve:reply:{request_id}"


def serve_ready(server_id: int) -> str:
    """A server's replicas that are ready: session id -> when its last poll came
    (seconds since the epoch); one not heard from for a while is not ready."""
    return f"podium:serve:{server_id}:ready"


def serve_stats(server_id: int) -> str:
    """A server's counters: requests, answered, errors, timeouts, refused (none ready)."""
    return f"podium:serve:{server_id}:stats"


def serve_latencies(server_id: int) -> str:
    """The latencies (ms) of a server's last answered requests, newest first."""
    return f"podium:serve:{server_id}:latencies"
