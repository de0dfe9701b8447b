"""The cluster's GPUs and its state over time (`podium gpustat`, the /cluster page)."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from portal.api.guards import BEARER, token_required
from portal.api.schemas import ClusterArgs, ClusterOut, GpuStatOut
from portal.services import monitoring

PREFIX = "/cluster"
blp = Blueprint("api_cluster", __name__, description="GPUs and the cluster's use over time")


@blp.route("", methods=["GET"])
@blp.doc(security=BEARER)
@blp.arguments(ClusterArgs, location="query")
@blp.response(200, ClusterOut)
@token_required()
def cluster(args):
    """Over `span`, the share of GPUs allocated and the share of allocated GPUs at 80%
    utilisation or more; the nodes and their state; the average GPU utilisation of
    the last 100 sessions, per user for administrators, one's own otherwise."""
    return monitoring.dashboard(g.user, args["span"])


@blp.route("/gpus", methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, GpuStatOut(many=True))
@token_required()
def gpus():
    """Every GPU: node, index, model, who holds it, and its use now."""
    return monitoring.gpustat(g.user)
