"""The API node agents use, with their node token. Agents never touch the database."""

from __future__ import annotations

import shlex
from datetime import timedelta

from flask import current_app, g, request, send_file
from flask_smorest import Blueprint
from sqlalchemy import select

from portal.api.code import artifact_store
from portal.api.guards import BEARER, node_required
from portal.api.schemas import (
    AcceptedOut,
    HeartbeatIn,
    HeartbeatOut,
    LogsIn,
    NodeRegisterIn,
    NodeRegisterOut,
    SessionSpecOut,
    StateIn,
)
from portal.errors import NotFound
from portal.extensions import db
from portal.models import DatasetVersion, Session, SessionStatus
from portal.queue import node_queue_name
from portal.services import auth, nodes, sessions
from portal.services.lifecycle import finish, mark_running

PREFIX = "/internal"
blp = Blueprint("internal", __name__, description="Node agents' API (node token)")


def _node_session(session_id: int) -> Session:
    session = db.session.get(Session, session_id)
    if session is None or session.node_id != g.node.id:
        raise NotFound(f"node {g.node.name} holds no session {session_id}")
    return session


@blp.route("/nodes/register", methods=["POST"])
@blp.arguments(NodeRegisterIn)
@blp.response(201, NodeRegisterOut)
def register(payload):
    """Register a node with the cluster's join token; answers its own node token."""
    join_token = payload.pop("join_token")
    node, secret = nodes.register_node(
        join_token, current_app.config.get("NODE_JOIN_TOKEN"), **payload
    )
    return {
        "node_token": secret,
        "queue": node_queue_name(node.name),
        "redis_url": current_app.config.get("REDIS_URL"),
    }


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
    if session.state is SessionStatus.SCHEDULED:
        token = auth.issue_token(
            session.user, ttl=timedelta(days=30), label="session", session_id=session.id
        )
    api_url = (current_app.config.get("PUBLIC_URL") or request.host_url).rstrip("/")
    return {
        "session_id": session.id,
        "ident": session.ident,
        "status": session.status,
        "entry": session.entry,
        "args": shlex.split(session.args),
        "code_digest": session.code_digest,
        "gpu_indices": session.gpu_index_list,
        "cpus": session.cpus,
        "memory_mb": session.memory_mb,
        "image": session.image,
        "token": token,
        "resume": session.resume_checkpoint,
        "api_url": api_url + "/api/v1",
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


@blp.route("/datasets/<digest>")
@blp.doc(security=BEARER)
@blp.response(200, description="a dataset version's archive, a gzipped tar")
@node_required
def fetch_dataset(digest: str):
    """A dataset version's archive by digest, for a node's cache."""
    if not db.session.scalar(select(DatasetVersion.id).where(DatasetVersion.digest == digest)):
        raise NotFound("no such dataset version")
    return send_file(artifact_store().path(digest), mimetype="application/gzip")


@blp.route("/code/<digest>")
@blp.doc(security=BEARER)
@blp.response(200, description="the code archive, a gzipped tar")
@node_required
def fetch_code(digest: str):
    """A code archive by digest."""
    path = artifact_store().path(digest)
    if not path.is_file():
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
    if session.stop_requested and status is not SessionStatus.COMPLETED:
        status, payload["reason"] = SessionStatus.STOPPED, payload["reason"] or "stopped"
    return {"accepted": int(finish(session, status, payload["reason"], payload["exit_code"]))}


@blp.route("/sessions/<int:session_id>/logs", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(LogsIn)
@blp.response(200, AcceptedOut)
@node_required
def ship_logs(payload, session_id: int):
    """Log lines, numbered by the agent so a retried batch is stored once."""
    session = _node_session(session_id)
    return {"accepted": sessions.append_logs(session, payload["lines"])}
