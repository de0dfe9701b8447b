"""Hyperparameter searches' pages: one's searches, and a search with its best so far,
its trials, the metric over time, its parallel coordinates and, for PBT, the lineage."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm

from portal.errors import ApiError, NotFound
from portal.models import SearchStatus
from portal.services import compare, searches
from portal.web.assets import bokeh_resources
from portal.web.plots import search_plot

bp = Blueprint("searches", __name__)
SEARCH = "/searches/<username>/<int:number>"


class StopForm(FlaskForm):
    """The stop button, with the CSRF token."""


@bp.route("/searches")
@login_required
def index():
    return render_template(
        "searches/list.html",
        searches=[searches.search_dict(s, trials=False) for s in searches.listing(current_user)],
    )


@bp.route(SEARCH)
@login_required
def detail(username: str, number: int):
    search = searches.find(current_user, username, number)
    found = searches.search_dict(search)
    return render_template(
        "searches/detail.html",
        search=found,
        names=list(found["spec"]["space"]),
        lineage=searches.lineage(search) if search.algorithm in ("pbt", "asha") else [],
        sessions=[t["session"] for t in found["trials"] if t["session"]],
        may_stop=search.status == SearchStatus.RUNNING.value
        and (current_user.is_admin or search.user_id == current_user.id),
        stop_form=StopForm(),
        bokeh=bokeh_resources(),
    )


@bp.route(SEARCH + "/plot.json")
@login_required
def plot(username: str, number: int):
    search = searches.find(current_user, username, number)
    found = searches.search_dict(search)
    sessions = [t.session for t in search.trials if t.session is not None]
    order = [s.ident for s in sessions]
    lines = {line["session"]: line for line in compare.lines(sessions, search.metric, 1000)}
    item = search_plot(found, lines, order)
    # Not jsonify: BokehJS needs the models in the order Bokeh wrote them.
    return current_app.response_class(json.dumps(item), mimetype="application/json")


@bp.route(SEARCH + "/stop", methods=["POST"])
@login_required
def stop(username: str, number: int):
    search = searches.find(current_user, username, number, change=True)
    if not StopForm().validate_on_submit():
        raise NotFound("no such action")
    try:
        searches.stop(search, current_app.extensions.get("redis"))
        flash(f"{search.ident} stopped, and its sessions with it.", "info")
    except ApiError as exc:
        flash(exc.message, "error")
    return redirect(url_for("searches.detail", username=username, number=number))
