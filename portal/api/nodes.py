from __future__ import annotations

from flask_smorest import Blueprint

from portal.api.guards import BEARER, admin_required
from portal.api.schemas import DrainIn, NodeOut, SessionOut
from portal.services import sessions
from portal.services.nodes import nodes_with_allocations, set_drained

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
@blp.response(200, NodeOut)
@admin_required
def drain(payload, name: str):
    """Drain a node (it takes no new sessions), or undrain it with `drained: false`."""
    set_drained(name, payload["drained"])
    return next(n for n in nodes_with_allocations() if n["name"] == name)


@blp.route("/queue")
@blp.doc(security=BEARER)
@blp.response(200, SessionOut(many=True))
@admin_required
def pending_queue():
    """Pending sessions in arrival order, each with the reason it waits."""
    return [sessions.session_dict(s) for s in sessions.queue()]
