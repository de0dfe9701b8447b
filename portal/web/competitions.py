"""Competition pages, open to spectators without an account. The leaderboard page
follows the board live through server-sent events: the portal pushes the new top rows
within moments of a score, the page never reloads."""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import datetime

import markdown
import nh3
from bokeh.embed import json_item
from bokeh.models import HoverTool
from bokeh.palettes import Category20_20
from bokeh.plotting import figure
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    send_file,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from markupsafe import Markup
from wtforms import (
    HiddenField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import Length, Optional

from portal import keys
from portal.api.code import artifact_store
from portal.errors import ApiError, NotFound
from portal.extensions import db
from portal.live import broadcaster
from portal.models import CompetitionTeam
from portal.services import checkpoints
from portal.services.competitions import (
    boards,
    core,
    entrants,
    rounds,
    submissions,
)
from portal.web.assets import bokeh_resources
from portal.web.forms import form_problem, page_arg, parse_id

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
    return render_template("competitions/list.html", competitions=core.listed(_viewer()))


class SelectForm(FlaskForm):
    submission = HiddenField()
    selected = HiddenField()


class TeamForm(FlaskForm):
    """Create a team (`name`), join one (its invite `code`, or the `team` whose
    invitation one accepts), or leave one's team (nothing)."""

    name = StringField("Team name", validators=[Optional(), Length(max=64)])
    code = StringField("Invite code", validators=[Optional(), Length(max=64)])
    team = HiddenField()


class SubmitFileForm(FlaskForm):
    predictions = FileField("Predictions (CSV: id,prediction)", validators=[FileRequired()])
    memo = StringField("Memo", validators=[Optional(), Length(max=500)])


class SubmitSessionForm(FlaskForm):
    checkpoint = SelectField("Checkpoint", validate_choice=False)
    memo = StringField("Memo", validators=[Optional(), Length(max=500)])


def _act(slug: str, action) -> ResponseReturnValue:
    """Run a participant's action; its refusal is shown on the competition's page."""
    try:
        action()
    except ApiError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    return redirect(url_for("competitions.detail", slug=slug))


@bp.route("/<slug>/team/<action>", methods=["POST"])
@login_required
def team_action(slug: str, action: str):
    competition = core.find(current_user, slug)
    form = TeamForm()
    if not form.validate_on_submit():
        flash(form_problem(form), "error")
        return redirect(url_for("competitions.detail", slug=slug))
    actions = {
        "create": lambda: entrants.create_team(current_user, competition, form.name.data or ""),
        "join": lambda: entrants.join(
            current_user,
            competition,
            team=form.team.data or None,
            code=(form.code.data or "").strip() or None,
        ),
        "leave": lambda: entrants.leave(current_user, competition),
    }
    if action not in actions:
        raise NotFound(f"no team action {action!r}")
    return _act(slug, actions[action])


@bp.route("/<slug>/submit/<source>", methods=["POST"])
@login_required
def submit(slug: str, source: str):
    """Submit a predictions file, or one of one's checkpoints for grading."""
    competition = core.find(current_user, slug)
    redis = current_app.extensions.get("redis")
    if source == "file":
        form: FlaskForm = SubmitFileForm()
        if not form.validate_on_submit():
            flash(form_problem(form), "error")
            return redirect(url_for("competitions.detail", slug=slug))
        return _act(
            slug,
            lambda: submissions.submit_file(
                current_user,
                competition,
                form.predictions.data.read(submissions.MAX_PREDICTIONS_BYTES + 1),
                artifact_store(),
                redis,
                memo=form.memo.data or "",
            ),
        )
    if source == "session":
        form = SubmitSessionForm()
        if not form.validate_on_submit() or not form.checkpoint.data:
            flash("pick a checkpoint to submit", "error")
            return redirect(url_for("competitions.detail", slug=slug))
        return _act(
            slug,
            lambda: submissions.submit_session(
                current_user, competition, form.checkpoint.data, redis, memo=form.memo.data or ""
            ),
        )
    raise NotFound(f"no submission source {source!r}")


@bp.route("/<slug>/select", methods=["POST"])
@login_required
def select(slug: str):
    """Select or unselect one of the team's submissions for the final ranking."""
    competition = core.find(current_user, slug)
    form = SelectForm()
    if form.validate_on_submit():
        submission_id = parse_id(form.submission.data)
        if submission_id is None:
            flash("no such submission", "error")
            return redirect(url_for("competitions.detail", slug=slug))
        try:
            submissions.select_final(
                current_user,
                competition,
                submission_id,
                form.selected.data == "1",
                current_app.extensions.get("redis"),
            )
        except ApiError as exc:
            flash(exc.message, "error")
    return redirect(url_for("competitions.detail", slug=slug))


@bp.route("/<slug>")
def detail(slug: str):
    viewer = _viewer()
    competition = core.find(viewer, slug)
    mine = core.membership(viewer, competition)
    current, state = core.current(competition)
    session_form = SubmitSessionForm()
    if viewer is not None:
        session_form.checkpoint.choices = [
            SelectChoice(
                f"{s.ident}:{c.name}",
                f"{s.ident}:{c.name} ({s.entry}{', ' + s.memo if s.memo else ''})",
            )
            for s, c in checkpoints.submittable(viewer)
        ]
    return render_template(
        "competitions/detail.html",
        competition=competition,
        description=render_markdown(competition.description),
        rounds=[rounds.round_dict(r) for r in competition.rounds],
        current=rounds.round_dict(current) if current is not None else None,
        team=entrants.team_dict(mine.team, private=True) if mine else None,
        invitations=sorted(i.team.name for i in entrants.invites_for(viewer, competition))
        if viewer is not None and mine is None
        else [],
        quota=submissions.quota(mine.team if mine else None, current)
        if viewer is not None and current is not None and state == core.RoundState.OPEN
        else None,
        entries=[submissions.submission_dict(s) for s in submissions.team_submissions(mine.team)]
        if mine
        else [],
        organiser=core.is_organiser(viewer, competition),
        select_form=SelectForm(),
        team_form=TeamForm(),
        file_form=SubmitFileForm(),
        session_form=session_form,
        selectable={
            r.number for r in competition.rounds if core.round_state(r) != core.RoundState.ENDED
        },
    )


def _team_rows(slug: str, team_id: int) -> str:
    """The team's submissions as the rows of its table (one template for the page and
    its live updates)."""
    try:
        team = db.session.get(CompetitionTeam, team_id)
        competition = core.find(current_user, slug)
        mine = core.membership(current_user, competition)
        if team is None or mine is None or mine.team_id != team_id:
            return '<tr class="empty"><td colspan="9">You are no longer in this team.</td></tr>'
        found = submissions.team_submissions(team)
        entries = [submissions.submission_dict(s) for s in found]
        return render_template(
            "competitions/_submissions.html",
            competition=competition,
            entries=entries,
            select_form=SelectForm(),
            selectable={
                r.number for r in competition.rounds if core.round_state(r) != core.RoundState.ENDED
            },
        )
    finally:
        db.session.remove()  # a stream lasts minutes: it holds no connection


@bp.route("/<slug>/submissions/stream")
@login_required
def team_stream(slug: str):
    """Server-sent events: the team's submissions now, then again at every change (a
    new one, a state, a score, a selection), as the rows of their table."""
    competition = core.find(current_user, slug)
    mine = core.membership(current_user, competition)
    if mine is None:
        raise NotFound(f"you are in no team of {slug}")
    team_id = mine.team_id
    redis = _redis()
    db.session.remove()
    live = broadcaster()
    channel = keys.team_submissions(team_id)

    @stream_with_context
    def events() -> Iterator[str]:
        seen = int(redis.get(keys.team_version(team_id)) or 0)
        shown = _team_rows(slug, team_id)
        yield "retry: 1000\n" + _rows_event(seen, shown)
        deadline = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < deadline:
            woken = live.wait(channel, seen, KEEPALIVE_SECONDS)
            seen = woken if woken is not None else seen
            rows = _team_rows(slug, team_id)  # looked at anyway: a change may be missed
            if rows != shown:
                shown = rows
                yield _rows_event(seen, rows)
            else:
                yield ": keepalive\n\n"

    return Response(
        events(),  # type: ignore[call-arg]
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _rows_event(version: int, rows: str) -> str:
    return f"id: {version}\nevent: submissions\ndata: {json.dumps({'rows': rows})}\n\n"


@bp.route("/<slug>/rounds/<int:number>/test.csv")
def test_inputs(slug: str, number: int):
    """A round's published test inputs, for file submissions."""
    competition = core.find(_viewer(), slug)
    path = rounds.published_inputs(core.find_round(competition, number), artifact_store())
    return send_file(
        path,
        mimetype="text/csv",
        as_attachment=True,
        download_name=f"{slug}-round{number}-test.csv",
    )


@bp.route(BOARD)
def leaderboard(slug: str, number: int):
    """A round's boards, `ROWS_SHOWN` rows a page: the public one (live on its first
    page while the round is open), and the final, private one once it has ended."""
    viewer = _viewer()
    competition = core.find(viewer, slug)
    round_ = core.find_round(competition, number)
    state = core.round_state(round_)
    page = page_arg()
    offset = (page - 1) * ROWS_SHOWN
    redis = _redis()
    board = boards.view(viewer, competition, round_, boards.PUBLIC, offset, ROWS_SHOWN, redis)
    final = (
        boards.view(viewer, competition, round_, boards.PRIVATE, offset, ROWS_SHOWN, redis)
        if state == core.RoundState.ENDED
        else None
    )
    total = max(board["total"], final["total"] if final else 0)
    return render_template(
        "competitions/leaderboard.html",
        competition=competition,
        round=rounds.round_dict(round_),
        final=final,
        board=board,
        live=page == 1 and state != core.RoundState.ENDED,
        team_color=team_color,
        page=page,
        pages=max(1, -(-total // ROWS_SHOWN)),
        offset=offset,
        bokeh=bokeh_resources(),
    )


@bp.route(BOARD + "/history.json")
def history(slug: str, number: int):
    """A Bokeh JSON item: the top teams' best public score over time."""
    competition = core.find(_viewer(), slug)
    round_ = core.find_round(competition, number)
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


def team_color(team: str) -> str:
    """A team's colour in every plot: from its name, not its rank, so that it keeps it
    as the board moves."""
    return Category20_20[zlib.crc32(team.encode()) % len(Category20_20)]


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
    for entry in series:
        times = [datetime.fromisoformat(t.rstrip("Z")) for t, _ in entry["points"]]
        scores = [s for _, s in entry["points"]]
        color = team_color(entry["team"])
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
    competition = core.find(_viewer(), slug)
    round_ = core.find_round(competition, number)
    redis = _redis()
    board = boards.board(redis, round_)
    # A stream lasts minutes: it must not hold a database connection (the pool has a
    # few per worker, and hundreds of pages may be open).
    db.session.remove()

    def rows() -> dict:
        try:
            page = board.cached_page(0, ROWS_SHOWN)
            shown = [
                {**boards.shown_row(row), "color": team_color(row["team"])} for row in page["rows"]
            ]
            return {**page, "rows": shown}
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
