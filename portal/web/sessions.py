from __future__ import annotations

import json

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from portal.errors import NotFound
from portal.services import metrics
from portal.services import sessions as service
from portal.web.assets import bokeh_resources
from portal.web.auth import LogoutForm
from portal.web.plots import scalars_plot

bp = Blueprint("sessions", __name__)
SESSION = "/sessions/<username>/<int:number>"


def _find(username: str, number: int):
    return service.find_session(current_user, f"{username}/{number}")


@bp.app_context_processor
def layout_context():
    return {"logout_form": LogoutForm()}


@bp.route("/")
def root():
    return redirect(url_for("sessions.index"))


@bp.route("/sessions")
@login_required
def index():
    everyone = current_user.is_admin and request.args.get("mine") != "1"
    found = service.list_sessions(current_user, everyone=everyone)
    return render_template("sessions/list.html", sessions=found, everyone=everyone)


@bp.route(SESSION)
@login_required
def detail(username: str, number: int):
    session = _find(username, number)
    return render_template(
        "sessions/detail.html",
        run=session,
        info=service.session_dict(session),
        lines=service.tail_logs(session),
        tags=metrics.tags(session),
        bokeh=bokeh_resources(),
    )


@bp.route(SESSION + "/live.json")
@login_required
def live(username: str, number: int):
    """What the open page needs each second: new log lines, state, known tags."""
    session = _find(username, number)
    after = request.args.get("after", default=-1, type=int)
    lines = service.read_logs(session, after=after, limit=2000)
    return jsonify(
        session=service.session_dict(session),
        lines=[{"seq": line.seq, "text": line.text} for line in lines],
        tags=metrics.tags(session),
    )


@bp.route(SESSION + "/scalars.json")
@login_required
def scalars(username: str, number: int):
    session = _find(username, number)
    tag = request.args.get("tag")
    if not tag:
        raise NotFound("name a tag")
    line = metrics.line(session, tag, points=request.args.get("points", 1000, type=int))
    if line is None:
        raise NotFound(f"session {session.ident} reported no {tag}")
    return jsonify(step=line["step"], value=line["value"])


@bp.route(SESSION + "/plot.json")
@login_required
def plot(username: str, number: int):
    session = _find(username, number)
    tags = metrics.tags(session)
    if not tags:
        return jsonify(None)
    item = scalars_plot(
        tags,
        lambda tag: url_for("sessions.scalars", username=username, number=number, tag=tag),
        live=session.state.is_active,
    )
    # Not jsonify: it sorts keys, and BokehJS needs each model defined before the
    # references to it, in the order Bokeh wrote them.
    return current_app.response_class(json.dumps(item), mimetype="application/json")
