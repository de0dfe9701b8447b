"""The cluster dashboard (/cluster): GPUs allocated and busy over time, the nodes and
their state, and the average GPU utilisation of recent sessions (everyone's, per user,
for administrators; one's own otherwise). The data is `/api/v1/cluster`'s."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, render_template, request
from flask_login import current_user, login_required

from portal.services import monitoring
from portal.web.assets import bokeh_resources
from portal.web.plots import cluster_plot

bp = Blueprint("cluster", __name__)
PAGE_GPUS = 64
PAGE_USERS = 100


@bp.route("/cluster")
@login_required
def page():
    span = request.args.get("span", "1d")
    if span not in monitoring.RANGES:
        span = "1d"
    board = monitoring.dashboard(current_user, span)
    # A large cluster's page lists the viewer's GPUs only (`podium gpustat` has all),
    # and the most active users' averages (the API has everyone's).
    every_gpu = board["gpus"] <= PAGE_GPUS
    gpus = monitoring.gpustat(current_user, only_theirs=not every_gpu)
    return render_template(
        "cluster.html",
        board=board,
        spans=list(monitoring.RANGES),
        gpus=gpus,
        every_gpu=every_gpu,
        users=sorted(board["users"], key=lambda row: -row["sessions"])[:PAGE_USERS],
        bokeh=bokeh_resources(),
    )


@bp.route("/cluster/plot.json")
@login_required
def plot():
    span = request.args.get("span", "1d")
    history = monitoring.cluster_history(span if span in monitoring.RANGES else "1d")
    # Not jsonify: it sorts keys, and BokehJS needs each model defined first.
    return current_app.response_class(
        json.dumps({"item": cluster_plot(history), "points": len(history["time"])}),
        mimetype="application/json",
    )
