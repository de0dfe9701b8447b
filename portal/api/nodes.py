from __future__ import annotations

from flask_smorest import Blueprint

from portal.api.guards import BEARER, admin_required
from portal.api.schemas import NodeOut
from portal.services.nodes import nodes_with_allocations

PREFIX = "/nodes"
blp = Blueprint("api_nodes", __name__, description="Compute nodes (administrators)")


@blp.route("")
@blp.doc(security=BEARER)
@blp.response(200, NodeOut(many=True))
@admin_required
def list_nodes():
    """Every node with its GPUs and the session holding each."""
    return nodes_with_allocations()
