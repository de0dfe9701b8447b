"""Compute nodes: registration with a join token, heartbeats, and loss detection."""

from __future__ import annotations

import hmac
import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from portal.errors import ApiError, Conflict, NotFound, Unauthorized
from portal.extensions import db
from portal.models import (
    ACTIVE_STATUSES,
    Allocation,
    Gpu,
    Node,
    NodeStatus,
    Session,
    SessionStatus,
)
from portal.services.auth import hash_token, new_secret
from portal.services.lifecycle import finish, mark_running
from portal.timeutil import isoformat, utcnow

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def register_node(
    join_token: str,
    expected_join_token: str | None,
    *,
    name: str,
    hostname: str,
    cpu_count: int,
    memory_mb: int,
    runtime: str,
    gpus: list[dict[str, Any]],
) -> tuple[Node, str]:
    """Register (or re-register) a node; returns it with its new node token.

    Re-registering replaces the token and the GPU inventory: an agent that restarts
    registers again. Sessions the database still holds as running there are settled by
    the agent's first heartbeat, which lists what it really runs.
    """
    if not expected_join_token or not hmac.compare_digest(join_token, expected_join_token):
        raise Unauthorized("wrong node join token", code="bad_join_token")
    if not NODE_NAME.match(name):
        raise ApiError("a node name is letters, digits, '.', '-' and '_'", code="invalid_input")
    node = db.session.scalar(select(Node).where(Node.name == name))
    secret = new_secret()
    if node is None:
        node = Node(name=name)
        db.session.add(node)
    node.token_hash = hash_token(secret)
    node.hostname = hostname
    node.cpu_count = cpu_count
    node.memory_mb = memory_mb
    node.runtime = runtime
    if node.status == NodeStatus.LOST.value:
        node.status = NodeStatus.READY.value
    node.last_heartbeat_at = utcnow()
    node.gpus = [
        Gpu(
            index=int(g["index"]),
            uuid=str(g.get("uuid", "")),
            model=str(g.get("model", "")),
            memory_mb=int(g.get("memory_mb", 0)),
            simulated=bool(g.get("simulated", False)),
        )
        for g in gpus
    ]
    db.session.commit()
    return node, secret


def authenticate_node(secret: str) -> Node:
    node = db.session.scalar(select(Node).where(Node.token_hash == hash_token(secret)))
    if node is None:
        raise Unauthorized("unknown node token: register the node again", code="bad_node_token")
    return node


def heartbeat(
    node: Node,
    sample: dict[str, Any],
    running: list[int],
    *,
    images: list[str] | None = None,
    datasets: list[str] | None = None,
) -> tuple[list[Session], list[int]]:
    """Record a heartbeat (with what the node holds, for locality, when it says).

    Returns the sessions the database held as running there that the agent does not
    run (now lost), and the ids the agent runs that are not active sessions of this node
    (ended, removed or unknown), which it must stop.
    """
    node.last_heartbeat_at = utcnow()
    node.sample = sample
    if images is not None:
        node.images = sorted(set(images))
    if datasets is not None:
        node.datasets = sorted(set(datasets))
    if node.status == NodeStatus.LOST.value:
        node.status = NodeStatus.READY.value
    db.session.commit()
    vanished = list(
        db.session.scalars(
            select(Session).where(
                Session.node_id == node.id,
                Session.status == SessionStatus.RUNNING.value,
                Session.id.not_in(running),
            )
        )
    )
    # A session the agent runs whose "running" report did not arrive (a failed request)
    # runs all the same: it is marked so, and charged from now.
    for session in db.session.scalars(
        select(Session).where(
            Session.node_id == node.id,
            Session.status == SessionStatus.SCHEDULED.value,
            Session.id.in_(running),
        )
    ).all():
        mark_running(session)
    lost = [
        session
        for session in vanished
        if finish(
            session, SessionStatus.LOST, f"node {node.name} no longer runs it (its agent restarted)"
        )
    ]
    # What the agent runs that is not an active session of this node (ended, removed,
    # or never placed here): it must stop it.
    active_here = set(
        db.session.scalars(
            select(Session.id).where(
                Session.node_id == node.id,
                Session.status.in_([s.value for s in ACTIVE_STATUSES]),
            )
        )
    )
    ended = sorted(set(running) - active_here)
    return lost, ended


def mark_lost_nodes(lost_after_seconds: int) -> list[Node]:
    """Nodes whose heartbeats stopped are lost, and so are their active sessions."""
    deadline = utcnow() - timedelta(seconds=lost_after_seconds)
    lost = list(
        db.session.scalars(
            select(Node).where(
                Node.status != NodeStatus.LOST.value, Node.last_heartbeat_at < deadline
            )
        )
    )
    for node in lost:
        node.status = NodeStatus.LOST.value
        db.session.commit()
        for session in db.session.scalars(
            select(Session).where(
                Session.node_id == node.id,
                Session.status.in_([SessionStatus.SCHEDULED.value, SessionStatus.RUNNING.value]),
            )
        ).all():
            finish(
                session,
                SessionStatus.LOST,
                f"node {node.name} stopped answering (no heartbeat for {lost_after_seconds} s)",
            )
    return lost


def set_drained(name: str, drained: bool) -> Node:
    """A drained node keeps what runs on it and takes nothing new."""
    node = db.session.scalar(select(Node).where(Node.name == name))
    if node is None:
        raise NotFound(f"no node {name!r}")
    if node.status == NodeStatus.LOST.value:
        raise Conflict(f"node {name} is lost; it cannot be drained or undrained")
    node.status = (NodeStatus.DRAINED if drained else NodeStatus.READY).value
    db.session.commit()
    return node


def live_nodes() -> list[Node]:
    return list(
        db.session.scalars(
            select(Node).where(Node.status == NodeStatus.READY.value).order_by(Node.name)
        )
    )


def capacity_refusal(
    gpus: int, cpus: float, memory_mb: int, gpu_models: frozenset[str] = frozenset()
) -> str | None:
    """Why no registered node could ever hold the request, or None.

    With no node registered yet the request waits: a node may still join.
    """
    # Lost nodes count: one that misses heartbeats for a while must not make requests
    # that only it can hold be refused.
    nodes = list(db.session.scalars(select(Node)))
    if not nodes:
        return None
    if gpus and gpu_models:
        nodes = [n for n in nodes if n.gpus and n.gpus[0].model in gpu_models]
        if not nodes:
            return f"asks for GPU models {', '.join(sorted(gpu_models))}, which no node has"
    if any(len(n.gpus) >= gpus and n.cpu_count >= cpus and n.memory_mb >= memory_mb for n in nodes):
        return None
    most_gpus = max(len(n.gpus) for n in nodes)
    most_memory = max(n.memory_mb for n in nodes)
    if gpus > most_gpus:
        return f"asks for {gpus} GPU{'s' * (gpus != 1)} but the largest node has {most_gpus}"
    if memory_mb > most_memory:
        return f"asks for {memory_mb} MiB of memory but the largest node has {most_memory} MiB"
    return f"asks for {cpus:g} CPUs and no node has that many with the GPUs and memory"


def node_dict(node: Node, allocations: dict[int, str] | None = None) -> dict[str, Any]:
    allocations = allocations or {}
    usage = {g.get("index"): g for g in (node.sample or {}).get("gpus", [])}
    return {
        "name": node.name,
        "status": node.status,
        "runtime": node.runtime,
        "hostname": node.hostname,
        "cpu_count": node.cpu_count,
        "memory_mb": node.memory_mb,
        "last_heartbeat_at": isoformat(node.last_heartbeat_at),
        "sample": node.sample or {},
        "images": node.images or [],
        "datasets": node.datasets or [],
        "gpus": [
            {
                "index": g.index,
                "model": g.model,
                "uuid": g.uuid,
                "memory_mb": g.memory_mb,
                "simulated": g.simulated,
                "session": allocations.get(g.index),
                "utilization_percent": usage.get(g.index, {}).get("utilization_percent"),
                "memory_used_mb": usage.get(g.index, {}).get("memory_used_mb"),
            }
            for g in node.gpus
        ],
    }


def nodes_with_allocations() -> list[dict]:
    held: dict[int, dict[int, str]] = {}
    for allocation, session in db.session.execute(
        select(Allocation, Session).join(Session, Allocation.session_id == Session.id)
    ):
        held.setdefault(allocation.node_id, {})[allocation.gpu_index] = session.ident
    nodes = db.session.scalars(select(Node).order_by(Node.name))
    return [node_dict(node, held.get(node.id)) for node in nodes]
