"""The comparison page: sessions' curves overlaid, their arguments side by side."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, render_template, request
from flask_login import current_user, login_required

from portal.services import compare
from portal.web.assets import bokeh_resources
from portal.web.forms import query_int
from portal.web.plots import PALETTE, compare_plot

bp = Blueprint("compare", __name__)


def _named() -> list[str]:
    """`?s=a,b&s=c`: the list on the sessions page sends one `s` per ticked row."""
    return [name for value in request.args.getlist("s") for name in value.split(",")]


@bp.route("/compare")
@login_required
def page():
    sessions = compare.resolve(current_user, _named())
    idents = [s.ident for s in sessions]
    tags = compare.tags(sessions)
    metric = request.args.get("metric") or (tags[0] if tags else "")
    higher = request.args.get("better", "low" if "loss" in metric else "high") == "high"
    return render_template(
        "compare.html",
        sessions=sessions,
        idents=idents,
        colors={ident: PALETTE[i % len(PALETTE)] for i, ident in enumerate(idents)},
        tags=tags,
        metric=metric,
        higher=higher,
        values=compare.metric_columns(sessions, metric, higher) if metric else {},
        arguments=compare.arguments(sessions),
        bokeh=bokeh_resources(),
    )


@bp.route("/compare/plot.json")
@login_required
def plot():
    sessions = compare.resolve(current_user, _named())
    tags = compare.tags(sessions)
    item = compare_plot(
        {tag: compare.lines(sessions, tag, 1000) for tag in tags}, [s.ident for s in sessions]
    )
    # Not jsonify: BokehJS needs the models in the order Bokeh wrote them.
    return current_app.response_class(json.dumps(item), mimetype="application/json")


@bp.route("/compare/lines.json")
@login_required
def lines():
    """One tag's lines within the steps [start, end] a zoomed plot shows (the whole
    lines without them)."""
    sessions = compare.resolve(current_user, _named())
    tag = request.args.get("tag", "")
    start = query_int("start")
    end = query_int("end")
    found = compare.lines(sessions, tag, 1000, start, end)
    return current_app.response_class(json.dumps({"lines": found}), mimetype="application/json")
