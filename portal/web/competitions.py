"""Competition pages, open to spectators without an account. The leaderboard page
follows the board live through server-sent events: the portal pushes the new top rows
within moments of a score, the page never reloads."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import markdown
import nh3
from bokeh.embed import json_item
from bokeh.models import HoverTool
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, MultipleFileField
from markupsafe import Markup
from wtforms import HiddenField

from portal.api.competitions import parse_spec
from portal.errors import ApiError, NotFound
from portal.extensions import db
from portal.live import broadcaster
from portal.services import competitions as service
from portal.services import leaderboard as boards
from portal.services import submissions
from portal.services.artifacts import ArtifactStore
from portal.web.assets import bokeh_resources

bp = Blueprint("competitions", __name__, url_prefix="/competitions")
BOARD = "/<slug>/rounds/<int:number>/leaderboard"
ROWS_SHOWN = 100
STREAM_SECONDS = 300  # then the browser's EventSource reconnects by itself
KEEPALIVE_SECONDS = 15


def _viewer():
    return current_user if current_user.is_authenticated else None


def _redis():
    redis = current_app.extensions.get("redis")
    if redis is None:
        raise ApiError("the leaderboard needs Redis", code="unavailable", status=503)
    return redis


def render_markdown(text: str) -> Markup:
    """An organiser's Markdown, as HTML with scripts and event handlers removed."""
    html = markdown.markdown(text, extensions=["fenced_code", "tables"])
    return Markup(nh3.clean(html))


@bp.route("")
def index():
    return render_template("competitions/list.html", competitions=service.listed(_viewer()))


class CreateForm(FlaskForm):
    spec = FileField("Spec (YAML)", validators=[FileRequired()])
    files = MultipleFileField("Files it names (test inputs, labels, scorers)")


class SelectForm(FlaskForm):
    submission = HiddenField()
    selected = HiddenField()


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create():
    """Organise a competition: the same spec and files as `podium competition create`."""
    form = CreateForm()
    error = None
    if not current_user.may_organise:
        error = "Creating competitions needs the organiser level: ask an administrator to grant it."
    elif form.validate_on_submit():
        try:
            spec = parse_spec(form.spec.data.read().decode("utf-8", errors="replace"))
            files = {f.filename: f.read() for f in form.files.data or [] if f and f.filename}
            competition = service.create(
                current_user,
                spec,
                files,
                ArtifactStore(current_app.config["ARTIFACT_ROOT"]),
                current_app.config.get("GRADER_PUBLIC_KEY") or "",
            )
        except ApiError as exc:
            db.session.rollback()
            error = exc.message
        else:
            return redirect(url_for("competitions.detail", slug=competition.slug))
    return render_template("competitions/new.html", form=form, error=error)


@bp.route("/<slug>/select", methods=["POST"])
@login_required
def select(slug: str):
    """Select or unselect one of the team's submissions for the final ranking."""
    competition = service.find(current_user, slug)
    form = SelectForm()
    if form.validate_on_submit():
        submission = submissions.find(competition, int(form.submission.data or 0))
        mine = service.membership(current_user, competition)
        if mine is None or mine.team_id != submission.team_id:
            raise NotFound(f"no submission {submission.id} of your team")
        try:
            submissions.select_final(current_user, submission, form.selected.data == "1")
        except ApiError as exc:
            flash(exc.message, "error")
    return redirect(url_for("competitions.detail", slug=slug))


@bp.route("/<slug>")
def detail(slug: str):
    competition = service.find(_viewer(), slug)
    viewer = _viewer()
    mine = service.membership(viewer, competition)
    return render_template(
        "competitions/detail.html",
        competition=competition,
        description=render_markdown(competition.description),
        rounds=[service.round_dict(r) for r in competition.rounds],
        team=service.team_dict(mine.team, private=True) if mine else None,
        entries=[submissions.submission_dict(s) for s in submissions.team_submissions(mine.team)]
        if mine
        else [],
        organiser=service.is_organiser(viewer, competition),
        select_form=SelectForm(),
        selectable={r.number for r in competition.rounds if service.round_state(r) != "ended"},
    )


def _live_rows(round_) -> dict:
    return boards.board(_redis(), round_).cached_page(0, ROWS_SHOWN)


@bp.route(BOARD)
def leaderboard(slug: str, number: int):
    competition = service.find(_viewer(), slug)
    round_ = service.find_round(competition, number)
    state = service.round_state(round_)
    final = boards.private_board(_redis(), round_) if state == "ended" else None
    return render_template(
        "competitions/leaderboard.html",
        competition=competition,
        round=service.round_dict(round_),
        final=final[:ROWS_SHOWN] if final is not None else None,
        board=_live_rows(round_),
        bokeh=bokeh_resources(),
    )


@bp.route(BOARD + "/history.json")
def history(slug: str, number: int):
    """A Bokeh JSON item: the top teams' best public score over time."""
    competition = service.find(_viewer(), slug)
    round_ = service.find_round(competition, number)
    top = boards.board(_redis(), round_).cached_page(0, HISTORY_TEAMS)
    key = (round_.id, top["version"])
    with _HISTORY_LOCK:  # a change makes every open page ask at once: draw it once
        text = _HISTORY.get(key)
        if text is None:
            text = _history_plot(round_, [row["team_id"] for row in top["rows"]])
            if len(_HISTORY) > 256:
                _HISTORY.clear()
            _HISTORY[key] = text
    return current_app.response_class(text, mimetype="application/json")


# (round id, board version) -> the history plot's JSON item.
_HISTORY: dict[tuple[int, int], str] = {}
_HISTORY_LOCK = threading.Lock()
HISTORY_TEAMS = 10


def _history_plot(round_, team_ids: list[int]) -> str:
    series = submissions.history(round_, team_ids)
    plot = figure(
        height=300,
        sizing_mode="stretch_width",
        x_axis_type="datetime",
        x_axis_label="time (UTC)",
        y_axis_label=f"best public {round_.metric}",
        tools="pan,wheel_zoom,box_zoom,reset,save",
    )
    for position, entry in enumerate(series):
        times = [datetime.fromisoformat(t.rstrip("Z")) for t, _ in entry["points"]]
        scores = [s for _, s in entry["points"]]
        color = Category10_10[position % len(Category10_10)]
        plot.step(
            times, scores, mode="after", line_width=2, color=color, legend_label=entry["team"]
        )
        plot.scatter(times, scores, size=6, color=color, legend_label=entry["team"])
    plot.add_tools(HoverTool(tooltips=[("score", "@y{0.0000}")]))
    plot.toolbar.logo = None
    if series:
        plot.legend.location = "bottom_right" if round_.higher_is_better else "top_right"
        plot.legend.click_policy = "hide"
    return json.dumps(json_item(plot))


def _event(version: int, body: dict) -> str:
    return f"id: {version}\nevent: board\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"


@bp.route(BOARD + "/stream")
def stream(slug: str, number: int):
    """Server-sent events: the board now, then again at every change."""
    competition = service.find(_viewer(), slug)
    round_ = service.find_round(competition, number)
    redis = _redis()
    board = boards.board(redis, round_)
    # A stream lasts minutes: it must not hold a database connection (the pool has a
    # few per worker, and hundreds of pages may be open).
    db.session.remove()

    def rows() -> dict:
        try:
            return board.cached_page(0, ROWS_SHOWN)
        finally:
            db.session.remove()  # a rebuild from the database, if any, lets go at once

    live = broadcaster()
    channel = boards.channel(board.round_id)

    @stream_with_context
    def events() -> Iterator[str]:
        body = rows()
        sent = body["version"]
        yield "retry: 1000\n" + _event(sent, body)
        deadline = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < deadline:
            # Woken by a change, or after a while to look anyway (a change published
            # before this process listened, or while Redis was away, is not missed).
            woken = live.wait(channel, sent, KEEPALIVE_SECONDS)
            body = rows()  # changes that came together are sent once, at the latest
            if body["version"] != sent:
                sent = body["version"]
                yield _event(sent, body)
            elif woken is None:
                yield ": keepalive\n\n"

    return Response(
        events(),  # type: ignore[call-arg]
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
