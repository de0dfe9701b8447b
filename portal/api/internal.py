"""The API node agents use, with their node token. Agents never touch the database."""

from __future__ import annotations

import shlex
import time
from datetime import timedelta

from flask import current_app, g, request, send_file
from flask_smorest import Blueprint
from sqlalchemy import select

from portal import keys, node_work
from portal.api.code import artifact_store
from portal.api.guards import BEARER, node_required, read_body
from portal.api.schemas import (
    AcceptedOut,
    EventsIn,
    HeartbeatIn,
    HeartbeatOut,
    LogsIn,
    NodeJobResultIn,
    NodeRegisterIn,
    NodeRegisterOut,
    NodeWorkIn,
    NodeWorkOut,
    ResourceSamplesIn,
    SessionSpecOut,
    StateIn,
)
from portal.errors import Conflict, NotFound
from portal.extensions import db
from portal.live import broadcaster
from portal.models import (
    Checkpoint,
    DatasetVersion,
    Session,
    SessionDataset,
    SessionKind,
    SessionStatus,
)
from portal.queue import redis_connection
from portal.services import auth, metrics, monitoring, nodes, sessions
from portal.services.competitions import grading, reproductions
from portal.services.lifecycle import finish, mark_running

PREFIX = "/internal"
blp = Blueprint("internal", __name__, description="Node agents' API (node token)")


def _active_here() -> tuple:
    """Conditions on Session: placed on the calling node, and not ended."""
    return (
        Session.node_id == g.node.id,
        Session.status.in_([SessionStatus.SCHEDULED.value, SessionStatus.RUNNING.value]),
    )


def _node_session(session_id: int) -> Session:
    session = db.session.get(Session, session_id)
    if session is None or session.node_id != g.node.id:
        raise NotFound(f"node {g.node.name} holds no session {session_id}")
    return session


@blp.route("/nodes/register", methods=["POST"])
@blp.arguments(NodeRegisterIn)
@blp.response(201, NodeRegisterOut)
def register(payload):
    """Register a node with the cluster's join token, or again with its own node token;
    answers a new node token. Nothing else: a node holds no Redis or database
    credential."""
    join_token = payload.pop("join_token")
    header = request.headers.get("Authorization", "")
    node_token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    _, secret = nodes.register_node(
        join_token, node_token, current_app.config.get("NODE_JOIN_TOKEN"), **payload
    )
    return {"node_token": secret}


@blp.route("/nodes/work", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(NodeWorkIn)
@blp.response(200, NodeWorkOut)
@node_required
def take_work(payload):
    """This node's next jobs (start, stop, exec a session), waiting up to `wait`
    seconds for one to be queued."""
    redis = redis_connection()
    name = g.node.name
    # A long poll holds no database connection (nor SQLite's lock) while it waits.
    db.session.close()
    deadline = time.monotonic() + payload["wait"]
    while True:
        seen = node_work.sequence(redis, name)
        jobs = node_work.take(redis, name)
        left = deadline - time.monotonic()
        if jobs or left <= 0:
            return {"jobs": jobs}
        # Woken at once by the publish that queues work; the slice bounds the wait when
        # this process's subscription missed it (while it was starting, say).
        broadcaster().wait(keys.node_wake(name), seen, min(left, 1.0))


@blp.route("/nodes/work/<job_id>/result", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(NodeJobResultIn)
@blp.response(200, AcceptedOut)
@node_required
def job_result(payload, job_id: str):
    """The outcome of a job this node took."""
    done = node_work.complete(redis_connection(), g.node.name, job_id, payload["result"])
    if not done:
        raise NotFound(f"node {g.node.name} holds no job {job_id}")
    return {"accepted": 1}


@blp.route("/nodes/heartbeat", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(HeartbeatIn)
@blp.response(200, HeartbeatOut)
@node_required
def heartbeat(payload):
    """A resource sample and the sessions the agent runs. Answers the sessions declared
    lost, and those the agent runs that have ended here, which it must stop."""
    lost, ended = nodes.heartbeat(
        g.node,
        payload["sample"],
        payload["running"],
        images=payload["images"],
        datasets=payload["datasets"],
        environments=payload["environments"],
    )
    return {"lost": [s.id for s in lost], "ended": ended}


@blp.route("/sessions/<int:session_id>/spec")
@blp.doc(security=BEARER)
@blp.response(200, SessionSpecOut)
@node_required
def session_spec(session_id: int):
    """What the agent needs to start a session, with a token scoped to it."""
    session = _node_session(session_id)
    token = ""
    grading = None
    if session.kind == SessionKind.GRADING.value:
        grading = _grading_spec(session)
    elif session.state is SessionStatus.SCHEDULED:
        token = auth.issue_token(
            session.user, ttl=timedelta(days=30), label="session", session_id=session.id
        )
    api_url = (current_app.config.get("PUBLIC_URL") or request.host_url).rstrip("/")
    return {
        "session_id": session.id,
        "ident": session.ident,
        "status": session.status,
        # The node checks these too: it refuses code its runtime may not run.
        "owner": session.user.username,
        "trusted": session.user.is_trusted,
        "entry": session.entry,
        "args": shlex.split(session.args),
        "code_digest": session.code_digest,
        "gpu_indices": session.gpu_index_list,
        "gpu_share": sessions.gpu_share(session),
        "cpus": session.cpus,
        "memory_mb": session.memory_mb,
        "image": session.image,
        "environment": session.environment,
        "token": token,
        "resume": session.resume_checkpoint,
        "mode": session.mode,
        "api_url": api_url + "/api/v1",
        "grading": grading,
        "datasets": [
            {
                "mount": m.mount,
                "ref": m.ref,
                "digest": m.version.digest,
                "content_digest": m.version.content_digest,
                "size_bytes": m.version.size_bytes,
            }
            for m in sessions.mounted(session)
            if m.version is not None  # removed: refused while the session was active
        ],
    }


def _grading_spec(session: Session) -> dict | None:
    """A grading session gets no token (it has no network) but the checkpoint to
    restore and the round's hidden test inputs, which only grading sessions receive."""
    graded = grading.for_grading_session(session) or reproductions.for_grading_session(session)
    checkpoint = db.session.scalar(
        select(Checkpoint).where(
            Checkpoint.session_id == session.id, Checkpoint.name == session.resume_checkpoint
        )
    )
    if graded is None or checkpoint is None:
        return None
    return {
        "inputs_digest": graded.round.inputs_digest,
        "checkpoint": checkpoint.name,
        "checkpoint_digest": checkpoint.digest,
        "time_limit_s": graded.round.time_limit_s,
    }


@blp.route("/sessions/<int:session_id>/inputs")
@blp.doc(security=BEARER)
@blp.response(200, description="the hidden test inputs of the round it grades")
@node_required
def grading_inputs(session_id: int):
    """The test inputs, to the node of an active grading session only."""
    session = _node_session(session_id)
    grading = _grading_spec(session) if session.state.is_active else None
    if grading is None:
        raise NotFound(f"session {session_id} grades nothing now")
    return send_file(artifact_store().path(grading["inputs_digest"]), mimetype="text/csv")


@blp.route("/sessions/<int:session_id>/predictions", methods=["PUT"])
@blp.doc(security=BEARER, requestBody={"content": {"text/csv": {"schema": {"type": "string"}}}})
@blp.response(200, AcceptedOut)
@node_required
def grading_predictions(session_id: int):
    """The predictions a grading session wrote; checked, then queued for scoring."""
    session = _node_session(session_id)
    data = read_body(grading.MAX_PREDICTIONS_BYTES)
    redis = current_app.extensions.get("redis")
    if reproductions.for_grading_session(session) is not None:
        reproduction = reproductions.grading_predictions(session, data, artifact_store(), redis)
        return {"accepted": int(reproduction.status == "scoring")}
    submission = grading.grading_predictions(session, data, artifact_store(), redis)
    return {"accepted": int(submission.status == "scoring")}


@blp.route("/datasets/<digest>")
@blp.doc(security=BEARER)
@blp.response(200, description="a dataset version's archive, a gzipped tar")
@node_required
def fetch_dataset(digest: str):
    """A dataset version's archive by digest, for a node's cache: one that a session
    placed on this node mounts."""
    mounted = db.session.scalar(
        select(DatasetVersion.id)
        .join(SessionDataset, SessionDataset.version_id == DatasetVersion.id)
        .join(Session, Session.id == SessionDataset.session_id)
        .where(DatasetVersion.digest == digest, *_active_here())
        .limit(1)
    )
    if mounted is None:
        raise NotFound("no such dataset version")
    return send_file(artifact_store().path(digest), mimetype="application/gzip")


@blp.route("/code/<digest>")
@blp.doc(security=BEARER)
@blp.response(200, description="the code archive, a gzipped tar")
@node_required
def fetch_code(digest: str):
    """A code archive (or a grading session's checkpoint) by digest: one that a session
    placed on this node runs."""
    path = artifact_store().path(digest)
    runs = db.session.scalar(
        select(Session.id).where(Session.code_digest == digest, *_active_here()).limit(1)
    )
    restores = db.session.scalar(
        select(Checkpoint.id)
        .join(Session, Session.id == Checkpoint.session_id)
        .where(Checkpoint.digest == digest, *_active_here())
        .limit(1)
    )
    if (runs is None and restores is None) or not path.is_file():
        raise NotFound("no such code archive")
    return send_file(path, mimetype="application/gzip")


@blp.route("/sessions/<int:session_id>/state", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(StateIn)
@blp.response(200, AcceptedOut)
@node_required
def report_state(payload, session_id: int):
    """The session started, or ended and how."""
    session = _node_session(session_id)
    status = SessionStatus(payload["status"])
    if status is SessionStatus.RUNNING:
        mark_running(session)
        return {"accepted": 1}
    # Stopped by the platform (out of credit) it is stopped, however it exited; by its
    # owner, a run that completed meanwhile has completed.
    if session.stop_requested and (status is not SessionStatus.COMPLETED or session.stop_reason):
        status = SessionStatus.STOPPED
        payload["reason"] = session.stop_reason or payload["reason"] or "stopped"
    return {"accepted": int(finish(session, status, payload["reason"], payload["exit_code"]))}


@blp.route("/sessions/<int:session_id>/scalars", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(EventsIn)
@blp.response(200, AcceptedOut)
@node_required
def ship_scalars(payload, session_id: int):
    """Scalars the agent read from a session's TensorBoard event files."""
    return {"accepted": metrics.record(_node_session(session_id), payload)}


@blp.route("/sessions/<int:session_id>/resources", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ResourceSamplesIn)
@blp.response(200, AcceptedOut)
@node_required
def ship_resources(payload, session_id: int):
    """Resource samples of a session the node runs; a batch sent again is stored once."""
    session = _node_session(session_id)
    if not session.state.is_active:
        raise Conflict(f"session {session.ident} has ended; it takes no more samples")
    return {"accepted": monitoring.record(session, payload["samples"])}


@blp.route("/sessions/<int:session_id>/logs", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(LogsIn)
@blp.response(200, AcceptedOut)
@node_required
def ship_logs(payload, session_id: int):
    """Log lines, numbered by the agent so a retried batch is stored once."""
    session = _node_session(session_id)
    return {"accepted": sessions.append_logs(session, payload["lines"])}
