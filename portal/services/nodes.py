"""Compute nodes: registration with a join token, heartbeats, and loss detection."""

from __future__ import annotations

import hmac
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from nodes import environment
from portal import trust
from portal.errors import ApiError, Conflict, Forbidden, NotFound, Unauthorized
from portal.extensions import db
from portal.models import (
    ACTIVE_STATUSES,
    Allocation,
    Gpu,
    Node,
    NodeJoinToken,
    NodeStatus,
    Session,
    SessionStatus,
    User,
)
from portal.services import migration
from portal.services.auth import TOKEN_PREFIX, hash_token, new_secret
from portal.services.lifecycle import finish, mark_running
from portal.timeutil import isoformat, utcnow
from scheduler import policy

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def join_token_accepted(candidate: str, configured: str | None) -> bool:
    """The cluster's join token: the latest one an administrator made, or, until one
    was ever made, the one configured (NODE_JOIN_TOKEN)."""
    if not candidate:
        return False
    latest = db.session.scalar(select(NodeJoinToken).order_by(NodeJoinToken.id.desc()).limit(1))
    if latest is not None:
        return hmac.compare_digest(hash_token(candidate), latest.token_hash)
    # As bytes: compare_digest refuses text that is not ASCII.
    return bool(configured) and hmac.compare_digest(candidate.encode(), (configured or "").encode())


def rotate_join_token() -> str:
    """A new join token (shown once); every earlier one is refused from now on. Nodes
    registered already keep their own node tokens."""
    secret = "pdj_" + new_secret().removeprefix(TOKEN_PREFIX)
    db.session.add(NodeJoinToken(token_hash=hash_token(secret)))
    db.session.commit()
    return secret


def register_node(
    join_token: str,
    node_token: str,
    expected_join_token: str | None,
    *,
    name: str,
    hostname: str,
    cpu_count: int,
    memory_mb: int,
    runtime: str,
    gpus: list[dict[str, Any]],
    operators: list[str] | None = None,
) -> tuple[Node, str]:
    """Register a node; returns it with its new node token.

    A new node needs the join token. A registered one registers again with its own
    node token (an agent that restarts), which replaces the token and the inventory;
    the join token cannot take over a node that exists, so whoever holds it cannot
    impersonate a node and receive its work. A removed node's name may join again.
    Sessions the database still holds as running there are settled by the agent's
    first heartbeat, which lists what it really runs.
    """
    if not NODE_NAME.match(name):
        raise ApiError("a node name is letters, digits, '.', '-' and '_'", code="invalid_input")
    node = db.session.scalar(select(Node).where(Node.name == name))
    if node_token:
        known = authenticate_node(node_token)
        if known.name != name:
            raise Forbidden(f"this node token belongs to node {known.name}", code="bad_node_token")
        node = known
    else:
        if not join_token_accepted(join_token, expected_join_token):
            raise Unauthorized("wrong node join token", code="bad_join_token")
        if node is not None and node.status != NodeStatus.REMOVED.value:
            raise Conflict(
                f"node {name} is registered already: it registers again with its own node "
                f"token, or an administrator removes it first (`podium node rm {name}`)",
                code="node_exists",
            )
    secret = new_secret()
    if node is None:
        node = Node(name=name)
        db.session.add(node)
    node.token_hash = hash_token(secret)
    node.hostname = hostname
    node.cpu_count = cpu_count
    node.memory_mb = memory_mb
    node.runtime = runtime
    node.operators = sorted(set(operators or []))
    if node.status in (NodeStatus.LOST.value, NodeStatus.REMOVED.value):
        node.status = NodeStatus.READY.value
    # When the agent (re)started: work it took before then is lost with the old one.
    node.registered_at = node.last_heartbeat_at = utcnow()
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
    if node is None or node.status == NodeStatus.REMOVED.value:
        raise Unauthorized("unknown node token: register the node again", code="bad_node_token")
    return node


def remove_node(name: str) -> tuple[Node, list[Session]]:
    """Take a node out of the cluster: its token is refused at once, and the sessions
    it held end as lost."""
    node = db.session.scalar(select(Node).where(Node.name == name))
    if node is None or node.status == NodeStatus.REMOVED.value:
        raise NotFound(f"no node {name!r}")
    node.status = NodeStatus.REMOVED.value
    node.token_hash = hash_token(new_secret())  # one nobody holds
    db.session.commit()
    lost = [
        session
        for session in db.session.scalars(
            select(Session).where(
                Session.node_id == node.id,
                Session.status.in_([SessionStatus.SCHEDULED.value, SessionStatus.RUNNING.value]),
            )
        ).all()
        if finish(session, SessionStatus.LOST, f"node {name} was removed from the cluster")
    ]
    return node, lost


def heartbeat(
    node: Node,
    sample: dict[str, Any],
    running: list[int],
    *,
    images: list[str] | None = None,
    datasets: list[str] | None = None,
    environments: list[dict[str, Any]] | None = None,
) -> tuple[list[Session], list[int]]:
    """Record a heartbeat (with what the node holds, for locality, when it says).

    Returns the sessions the database held as running there that the agent does not
    run (now lost), and the ids the agent runs that are not active sessions of this node
    (ended, removed or unknown) or that were asked to stop, which it must stop.
    """
    node.last_heartbeat_at = utcnow()
    node.sample = sample
    if images is not None:
        node.images = sorted(set(images))
    if datasets is not None:
        node.datasets = sorted(set(datasets))
    if environments is not None:
        node.environments = sorted(
            (e for e in environments if e["tag"].startswith(f"{environment.ENV_REPOSITORY}:")),
            key=lambda e: e["tag"],
        )
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
    # And what it was asked to stop, in case that job was lost (with Redis, say).
    stopping = set(
        db.session.scalars(
            select(Session.id).where(
                Session.node_id == node.id,
                Session.status == SessionStatus.RUNNING.value,
                Session.stop_requested.is_(True),
                Session.id.in_(running),
            )
        )
    )
    ended = sorted((set(running) - active_here) | stopping)
    return lost, ended


def mark_lost_nodes(lost_after_seconds: int) -> list[Node]:
    """Nodes whose heartbeats stopped are lost, and so are their active sessions."""
    deadline = utcnow() - timedelta(seconds=lost_after_seconds)
    lost = list(
        db.session.scalars(
            select(Node).where(
                Node.status.not_in([NodeStatus.LOST.value, NodeStatus.REMOVED.value]),
                Node.last_heartbeat_at < deadline,
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


def set_drained(
    name: str, drained: bool, *, migrate: bool = False, redis=None
) -> dict[str, list[str]]:
    """A drained node takes nothing new; what runs on it goes on there, or, with
    `migrate`, moves to other nodes from a checkpoint (`migration`). Says which sessions
    migrate and which are left to finish."""
    node = db.session.scalar(select(Node).where(Node.name == name))
    if node is None:
        raise NotFound(f"no node {name!r}")
    if node.status == NodeStatus.LOST.value:
        raise Conflict(f"node {name} is lost; it cannot be drained or undrained")
    if migrate and not drained:
        raise ApiError("only a node being drained migrates its sessions", code="invalid_input")
    node.status = (NodeStatus.DRAINED if drained else NodeStatus.READY).value
    if not drained:  # what was asked to move stays
        db.session.execute(
            update(Session).where(Session.node_id == node.id).values(migrating_since=None)
        )
    db.session.commit()
    if migrate:
        return migration.start(node, redis)
    return {"migrating": [], "left_to_finish": []}


def live_nodes() -> list[Node]:
    return list(
        db.session.scalars(
            select(Node).where(Node.status == NodeStatus.READY.value).order_by(Node.name)
        )
    )


def capacity_refusal(request: policy.Request, owner: User | None = None) -> str | None:
    """Why no registered node could ever hold the request, or None: the scheduler's
    own judgement (`scheduler.policy.never_fits_reason`) on the nodes as registered.

    With no node registered yet the request waits: a node may still join.
    """
    # Lost nodes count: one that misses heartbeats for a while must not make requests
    # that only it can hold be refused.
    nodes = list(db.session.scalars(select(Node).where(Node.status != NodeStatus.REMOVED.value)))
    if owner is not None:
        request = replace(request, user=owner.username, trusted=owner.is_trusted)
    return policy.never_fits_reason(request, [view_of(node) for node in nodes])


def view_of(node: Node, held: dict[int, int] | None = None) -> policy.NodeView:
    """A node as placement sees it, its GPUs free but for `held` (thousandths held of
    each GPU); CPUs and memory are as registered (`scheduler/loop.py` subtracts what
    its sessions take)."""
    held = held or {}
    return policy.NodeView(
        name=node.name,
        total_gpus=len(node.gpus),
        free_gpus=tuple(g.index for g in node.gpus if not held.get(g.index)),
        total_cpus=float(node.cpu_count),
        free_cpus=float(node.cpu_count),
        total_memory_mb=node.memory_mb,
        free_memory_mb=node.memory_mb,
        gpu_model=node.gpus[0].model if node.gpus else "",
        drained=node.status == NodeStatus.DRAINED.value,
        datasets=frozenset(node.datasets or ()),
        images=frozenset(node.images or ()),
        isolating=node.isolating,
        operators=frozenset(node.operators or ()),
        partial=tuple(
            (g.index, policy.WHOLE - taken)
            for g in node.gpus
            if 0 < (taken := held.get(g.index, 0)) < policy.WHOLE
        ),
        # The least of its GPUs' memory: a share by memory fits on any of them.
        gpu_memory_mb=min((g.memory_mb for g in node.gpus), default=0),
    )


def admits(node: Node, user: User) -> bool:
    """May `user`'s sessions run on `node`?"""
    return trust.may_run_on(
        isolating=node.isolating,
        operators=node.operators or (),
        username=user.username,
        trusted=user.is_trusted,
    )


def environment_images(viewer: User) -> list[dict[str, Any]]:
    """The environment images each node holds: all of them for administrators, those of
    the viewer's own sessions for everyone else."""
    rows = [
        {"node": node.name, **image}
        for node in db.session.scalars(
            select(Node).where(Node.status != NodeStatus.REMOVED.value).order_by(Node.name)
        )
        for image in node.environments or []
    ]
    if viewer.is_admin:
        return rows
    own = {
        environment.image_tag(digest)
        for digest in db.session.scalars(
            select(Session.environment)
            .where(Session.user_id == viewer.id, Session.environment != "")
            .distinct()
        )
    }
    return [row for row in rows if row["tag"] in own]


def node_dict(node: Node, allocations: dict[int, str] | None = None) -> dict[str, Any]:
    allocations = allocations or {}
    usage = {g.get("index"): g for g in (node.sample or {}).get("gpus", [])}
    return {
        "name": node.name,
        "status": node.status,
        "runtime": node.runtime,
        "isolating": node.isolating,
        "operators": node.operators or [],
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
        select(Allocation, Session)
        .join(Session, Allocation.session_id == Session.id)
        .order_by(Allocation.id)
    ):
        # A GPU shared by several sessions names each, with its share.
        holder = session.ident
        if allocation.milli < policy.WHOLE:
            holder += f" ({allocation.milli / policy.WHOLE:g})"
        gpus = held.setdefault(allocation.node_id, {})
        gpus[allocation.gpu_index] = (
            f"{gpus[allocation.gpu_index]}, {holder}" if allocation.gpu_index in gpus else holder
        )
    nodes = db.session.scalars(
        select(Node).where(Node.status != NodeStatus.REMOVED.value).order_by(Node.name)
    )
    return [node_dict(node, held.get(node.id)) for node in nodes]
