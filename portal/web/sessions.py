from __future__ import annotations

import json

from flask import (
    Blueprint,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import Length

from portal.api.code import artifact_store
from portal.errors import ApiError, NotFound
from portal.extensions import db
from portal.models import Server, SessionStatus
from portal.services import checkpoints, metrics, monitoring, serving
from portal.services import sessions as service
from portal.web.assets import bokeh_resources
from portal.web.auth import LogoutForm
from portal.web.forms import page_arg, query_int
from portal.web.plots import resources_plot, scalars_plot

bp = Blueprint("sessions", __name__)
PAGE = 50
SESSION = "/sessions/<username>/<int:number>"


def _find(username: str, number: int):
    return service.find_session(current_user, f"{username}/{number}")


@bp.app_context_processor
def layout_context():
    return {"logout_form": LogoutForm()}


@bp.route("/sessions")
@login_required
def index():
    everyone = current_user.is_admin and request.args.get("mine") != "1"
    page = page_arg()
    args = {**request.args.to_dict(), "all": everyone, "offset": (page - 1) * PAGE, "limit": PAGE}
    try:
        found, total = service.search_sessions(current_user, service.filter_from(args))
        problem = None
    except ApiError as exc:
        found, total, problem = [], 0, exc.message
    return render_template(
        "sessions/list.html",
        sessions=found,
        everyone=everyone,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE)),
        filters=request.args,
        problem=problem,
        statuses=[status.value for status in SessionStatus],
    )


class MemoForm(FlaskForm):
    memo = StringField("Memo", validators=[Length(max=service.MAX_MEMO)])


class ActionForm(FlaskForm):
    """Stop, fork, resume: a button each, with the CSRF token."""


@bp.route(SESSION)
@login_required
def detail(username: str, number: int):
    session = _find(username, number)
    memo_form = MemoForm(memo=session.memo)
    return render_template(
        "sessions/detail.html",
        run=session,
        info=service.session_dict(session),
        lines=service.tail_logs(session),
        tags=metrics.tags(session),
        bokeh=bokeh_resources(),
        checkpoints=checkpoints.list_checkpoints(session),
        mounted=service.mounted(session),
        lineage=service.lineage(current_user, session),
        duration=service.duration(session),
        owner=session.user_id == current_user.id,
        memo_form=memo_form,
        action_form=ActionForm(),
        serving=_serving_of(session),
    )


def _serving_of(session):
    """For a replica of a served model: the server, its requests and latencies."""
    if session.server_id is None:
        return None
    server = db.session.get(Server, session.server_id)
    if server is None:
        return None
    return serving.server_dict(server, current_app.extensions.get("redis"))


@bp.route(SESSION + "/memo", methods=["POST"])
@login_required
def set_memo(username: str, number: int):
    session = service.find_session(current_user, f"{username}/{number}", change=True)
    form = MemoForm()
    if form.validate_on_submit():
        service.set_memo(session, form.memo.data or "")
        flash("memo saved", "info")
    return redirect(url_for("sessions.detail", username=username, number=number))


@bp.route(SESSION + "/<action>", methods=["POST"])
@login_required
def act(username: str, number: int, action: str):
    """The page's stop, fork and resume buttons: the same service calls as the API."""
    if action not in ("stop", "fork", "resume") or not ActionForm().validate_on_submit():
        raise NotFound("no such action")
    session = service.find_session(current_user, f"{username}/{number}", change=action != "fork")
    redis = current_app.extensions.get("redis")
    try:
        if action == "stop":
            target = service.request_stop(session, redis=redis)
        elif action == "fork":
            target = service.fork(
                current_user,
                session,
                args=None,
                checkpoint=None,
                store=artifact_store(),
                redis=redis,
            )
        else:
            target = service.resume(
                current_user, session, checkpoint=None, store=artifact_store(), redis=redis
            )
    except ApiError as exc:
        flash(exc.message, "error")
        target = session
    return redirect(
        url_for("sessions.detail", username=target.ident_owner, number=target.ident_number)
    )


@bp.route(SESSION + "/checkpoints/<name>.tar.gz")
@login_required
def checkpoint_file(username: str, number: int, name: str):
    session = _find(username, number)
    found = checkpoints.for_download(current_user, session, name)
    return send_file(
        artifact_store().path(found.digest),
        mimetype="application/gzip",
        as_attachment=True,
        download_name=f"{username}-{number}-{name}.tar.gz",
    )


@bp.route(SESSION + "/live.json")
@login_required
def live(username: str, number: int):
    """What the open page needs each second: new log lines, state, known tags, and the
    points stored after the page's cursor (or `refresh`: too many, load the plot anew)."""
    session = _find(username, number)
    after = query_int("after", -1)
    cursor = query_int("cursor", None)
    lines = service.read_logs(session, after=after, limit=2000)
    body: dict = {
        "session": service.session_dict(session),
        "lines": [{"seq": line.seq, "text": line.text} for line in lines],
        "tags": metrics.tags(session),
    }
    if cursor is not None:
        points, body["cursor"], complete = metrics.new_points(session, cursor)
        body["points"], body["refresh"] = points, not complete
    return jsonify(body)


@bp.route(SESSION + "/resources.json")
@login_required
def resources(username: str, number: int):
    """The session's resource history for its page: the figures (with `item=1`, the
    first time) and every line, which the page swaps into them as samples arrive."""
    session = _find(username, number)
    history = monitoring.history(session)
    body = {
        key: history[key]
        for key in (
            "status",
            "gpus",
            "simulated_gpus",
            "samples",
            "average_gpu_utilization",
            "average_cpu_percent",
            "memory_peak_mb",
            "gpu_memory_peak_mb",
            "series",
        )
    }
    if request.args.get("item") == "1":
        body["item"] = resources_plot(history["series"])
    # Not jsonify: it sorts keys, and BokehJS needs each model defined first.
    return current_app.response_class(json.dumps(body), mimetype="application/json")


@bp.route(SESSION + "/line.json")
@login_required
def line(username: str, number: int):
    """One tag's line within the steps [start, end] a zoomed plot shows (the whole line
    without them)."""
    session = _find(username, number)
    found = metrics.line(
        session,
        request.args.get("tag", ""),
        points=1000,
        start=query_int("start"),
        end=query_int("end"),
    )
    if found is None:
        raise NotFound(f"session {session.ident} reported no {request.args.get('tag', '')!r}")
    return current_app.response_class(json.dumps(found), mimetype="application/json")


@bp.route(SESSION + "/plot.json")
@login_required
def plot(username: str, number: int):
    """The session's curves, downsampled, and the cursor after which `live.json` sends
    what is new."""
    session = _find(username, number)
    cursor = metrics.cursor_now(session)
    tags = metrics.tags(session)
    if not tags:
        return jsonify(None)
    lines = {
        tag: metrics.line(session, tag, points=1000) or {"step": [], "value": []} for tag in tags
    }
    item = scalars_plot(lines)
    # Not jsonify: it sorts keys, and BokehJS needs each model defined before the
    # references to it, in the order Bokeh wrote them.
    body = json.dumps({"cursor": cursor, "item": item})
    return current_app.response_class(body, mimetype="application/json")
