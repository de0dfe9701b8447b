from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint

from portal import node_work
from portal.api.guards import BEARER, admin_required
from portal.api.schemas import (
    DrainIn,
    DrainOut,
    JoinTokenOut,
    NodeOut,
    NodeRemovedOut,
    SessionOut,
)
from portal.queue import redis_connection
from portal.services import nodes, sessions
from portal.services.nodes import nodes_with_allocations, remove_node, set_drained

PREFIX = "/nodes"
blp = Blueprint("api_nodes", __name__, description="Compute nodes (administrators)")


@blp.route("")
@blp.doc(security=BEARER)
@blp.response(200, NodeOut(many=True))
@admin_required
def list_nodes():
    """Every node with its GPUs and the session holding each."""
    return nodes_with_allocations()


@blp.route("/<name>/drain", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(DrainIn)
@blp.response(200, DrainOut)
@admin_required
def drain(payload, name: str):
    """Drain a node (it takes no new sessions), or undrain it with `drained: false`; with
    `migrate`, its running sessions that bound `save` checkpoint and go on elsewhere."""
    moved = set_drained(
        name, payload["drained"], migrate=payload["migrate"], redis=redis_connection()
    )
    return {**next(n for n in nodes_with_allocations() if n["name"] == name), **moved}


@blp.route("/queue")
@blp.doc(security=BEARER)
@blp.response(200, SessionOut(many=True))
@admin_required
def pending_queue():
    """Pending sessions in arrival order, each with the reason it waits."""
    return [sessions.session_dict(s) for s in sessions.queue()]


@blp.route("/<name>", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(200, NodeRemovedOut)
@admin_required
def remove(name: str):
    """Remove a node: its token is refused at once, its queued work is dropped, and the
    sessions it held end as lost."""
    node, lost = remove_node(name)
    redis = current_app.extensions.get("redis")
    if redis is not None:
        node_work.discard(redis, node.name)
    return {"name": node.name, "lost": [s.ident for s in lost]}


@blp.route("/join-token", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(201, JoinTokenOut)
@admin_required
def rotate_join_token():
    """A new join token for new nodes (shown once); every earlier one is refused."""
    return {"join_token": nodes.rotate_join_token()}
