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
    request,
    send_file,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, MultipleFileField
from markupsafe import Markup
from wtforms import (
    DateTimeLocalField,
    FloatField,
    HiddenField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from portal import keys
from portal.errors import ApiError, NotFound
from portal.extensions import db
from portal.live import broadcaster
from portal.models import CompetitionTeam
from portal.services import checkpoints
from portal.services.artifacts import ArtifactStore
from portal.services.competitions import (
    boards,
    core,
    entrants,
    exports,
    moderation,
    rounds,
    specs,
    submissions,
)
from portal.services.competitions.spec_schema import METRIC_NAMES
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
    return render_template("competitions/list.html", competitions=core.listed(_viewer()))


class CreateForm(FlaskForm):
    spec_text = TextAreaField("The spec (YAML or JSON)", validators=[Length(max=200_000)])
    spec = FileField("… or its file")
    folder = MultipleFileField("The spec's folder, with the files it names")
    files = MultipleFileField("… or the files it names, one by one")


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
        flash(_form_problem(form), "error")
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
            flash(_form_problem(form), "error")
            return redirect(url_for("competitions.detail", slug=slug))
        return _act(
            slug,
            lambda: submissions.submit_file(
                current_user,
                competition,
                form.predictions.data.read(submissions.MAX_PREDICTIONS_BYTES + 1),
                _store(),
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


# The organiser's panel -----------------------------------------------------------------

ORGANISER_PAGE = 50
UTC_INPUT = "%Y-%m-%dT%H:%M:%S"  # <input type="datetime-local" step="1">, in UTC


class RoundForm(FlaskForm):
    """A round's fields; those a started round keeps are shown disabled, so the browser
    does not send them (missing means unchanged). The rules: `rounds.edit_round`."""

    name = StringField("Name", validators=[Optional(), Length(max=200)])
    starts_at = DateTimeLocalField(
        "Opens (UTC)", format=[UTC_INPUT, "%Y-%m-%dT%H:%M"], validators=[Optional()]
    )
    ends_at = DateTimeLocalField(
        "Closes (UTC)", format=[UTC_INPUT, "%Y-%m-%dT%H:%M"], validators=[Optional()]
    )
    metric = SelectField("Metric", choices=list(METRIC_NAMES), validate_choice=False)
    higher_is_better = SelectField(
        "Better",
        choices=[
            SelectChoice("", "as the metric says"),
            SelectChoice("1", "higher"),
            SelectChoice("0", "lower"),
        ],
        validate_choice=False,
    )
    daily_quota = IntegerField("Submissions a day", validators=[Optional(), NumberRange(min=1)])
    total_quota = IntegerField("Submissions in all", validators=[Optional(), NumberRange(min=1)])
    public_fraction = FloatField(
        "Public share of the rows", validators=[Optional(), NumberRange(0, 1)]
    )
    final_selections = IntegerField("Final selections", validators=[Optional(), NumberRange(1, 20)])


class ReasonForm(FlaskForm):
    reason = StringField("Reason", validators=[DataRequired(), Length(max=2000)])


class LabelsForm(FlaskForm):
    labels = FileField("Fixed labels (id,label)", validators=[FileRequired()])


class VisibilityForm(FlaskForm):
    visibility = SelectField(
        "Visibility",
        choices=[
            SelectChoice("public", "public: listed, for everyone"),
            SelectChoice("unlisted", "unlisted: anyone with the link"),
            SelectChoice("private", "private: a draft only organisers see"),
        ],
    )


def _organised(slug: str):
    competition = core.find(current_user, slug)
    core.require_organiser(current_user, competition)
    return competition


def _to_panel(slug: str, **query) -> ResponseReturnValue:
    return redirect(url_for("competitions.organise", slug=slug, **query))


def _organiser_act(slug: str, action) -> ResponseReturnValue:
    try:
        message = action()
    except ApiError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        if message:
            flash(message, "done")
    return _to_panel(slug)


@bp.route("/<slug>/organise")
@login_required
def organise(slug: str):
    """The organiser's panel: visibility, rounds, labels, every team's submissions (with
    filters), disqualification, the final ranking."""
    competition = _organised(slug)
    page = max(request.args.get("page", 1, type=int), 1)
    found, total = submissions.search(
        current_user,
        competition,
        team_name=request.args.get("team") or None,
        status=request.args.get("status") or None,
        round_number=request.args.get("round", type=int),
        offset=(page - 1) * ORGANISER_PAGE,
        limit=ORGANISER_PAGE,
    )
    round_forms = {}
    for round_ in competition.rounds:
        form = RoundForm(prefix=f"r{round_.number}", formdata=None, obj=round_)
        form.higher_is_better.data = "1" if round_.higher_is_better else "0"
        round_forms[round_.number] = form
    return render_template(
        "competitions/organise.html",
        competition=competition,
        rounds=[rounds.round_dict(r) for r in competition.rounds],
        round_forms=round_forms,
        teams=entrants.teams(competition),
        entries=[submissions.submission_dict(s, private=True) for s in found],
        total=total,
        page=page,
        pages=max(1, -(-total // ORGANISER_PAGE)),
        filters={key: value for key, value in request.args.items() if key != "page"},
        reason_form=ReasonForm(),
        labels_form=LabelsForm(),
        visibility_form=VisibilityForm(visibility=competition.visibility),
        statuses=["grading", "scoring", "scored", "failed", "invalid", "disqualified"],
        after_start=sorted(rounds.AFTER_START - {"higher_is_better"}),
    )


@bp.route("/<slug>/organise/visibility", methods=["POST"])
@login_required
def set_visibility(slug: str):
    competition = _organised(slug)
    form = VisibilityForm()
    if not form.validate_on_submit():
        flash(_form_problem(form), "error")
        return _to_panel(slug)

    def change() -> str:
        core.edit(current_user, competition, {"visibility": form.visibility.data})
        return f"{competition.title} is {form.visibility.data} now"

    return _organiser_act(slug, change)


@bp.route("/<slug>/organise/rounds/<int:number>", methods=["POST"])
@login_required
def edit_round(slug: str, number: int):
    competition = _organised(slug)
    form = RoundForm(prefix=f"r{number}")
    if not form.validate_on_submit():
        flash(f"round {number}: {_form_problem(form)}", "error")
        return _to_panel(slug)
    changes = {
        key: getattr(form, key).data
        for key in (
            "name",
            "starts_at",
            "ends_at",
            "metric",
            "daily_quota",
            "total_quota",
            "public_fraction",
            "final_selections",
        )
    }
    if form.higher_is_better.data:
        changes["higher_is_better"] = form.higher_is_better.data == "1"
    redis = current_app.extensions.get("redis")

    def change() -> str:
        moderation.change_round(current_user, competition, number, changes, redis)
        return f"round {number} saved"

    return _organiser_act(slug, change)


@bp.route("/<slug>/organise/rounds/<int:number>/labels", methods=["POST"])
@login_required
def replace_labels(slug: str, number: int):
    competition = _organised(slug)
    form = LabelsForm()
    if not form.validate_on_submit():
        flash(_form_problem(form), "error")
        return _to_panel(slug)
    labels = form.labels.data.read()
    redis = current_app.extensions.get("redis")
    public_key = current_app.config.get("GRADER_PUBLIC_KEY") or ""

    def change() -> str:
        queued = moderation.replace_labels(
            current_user, competition, number, labels, _store(), public_key, redis
        )
        return f"round {number}: new labels; {queued} submissions are scored again"

    return _organiser_act(slug, change)


@bp.route("/<slug>/organise/rounds/<int:number>/rescore", methods=["POST"])
@login_required
def rescore(slug: str, number: int):
    competition = _organised(slug)
    if not FlaskForm().validate_on_submit():
        flash("the form has expired: load the page again", "error")
        return _to_panel(slug)
    redis = current_app.extensions.get("redis")

    def change() -> str:
        queued = moderation.rescore_round(current_user, competition, number, redis)
        return f"round {number}: {queued} submissions are scored again"

    return _organiser_act(slug, change)


@bp.route("/<slug>/organise/disqualify/<what>/<name>", methods=["POST"])
@login_required
def disqualify(slug: str, what: str, name: str):
    """Disqualify a submission (`what` = submission, `name` its id) or a team."""
    competition = _organised(slug)
    form = ReasonForm()
    if not form.validate_on_submit():
        flash(f"disqualifying needs a reason: {_form_problem(form)}", "error")
        return _to_panel(slug)
    reason = form.reason.data or ""
    redis = current_app.extensions.get("redis")
    if what == "submission" and name.isdigit():

        def change() -> str:
            moderation.disqualify_submission(current_user, competition, int(name), reason, redis)
            return f"submission {name} is disqualified"

    elif what == "team":

        def change() -> str:
            moderation.disqualify_team(current_user, competition, name, reason, redis)
            return f"team {name} is disqualified"

    else:
        raise NotFound(f"nothing to disqualify as {what} {name}")
    return _organiser_act(slug, change)


@bp.route("/<slug>/rounds/<int:number>/ranking.csv")
@login_required
def ranking(slug: str, number: int):
    """The final ranking, for the competition's organisers."""
    competition = core.find(current_user, slug)
    text = exports.ranking(current_user, competition, number, current_app.extensions.get("redis"))
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={slug}-round{number}-ranking.csv"},
    )


def _form_problem(form: FlaskForm) -> str:
    if not form.errors:
        return "the form was not complete"
    field, messages = next(iter(form.errors.items()))
    label = getattr(getattr(form, field, None), "label", None)
    return f"{label.text if label else field}: {messages[0]}"


def _store() -> ArtifactStore:
    return ArtifactStore(current_app.config["ARTIFACT_ROOT"])


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create():
    """Organise a competition: the same spec and files as `podium competition create`."""
    form = CreateForm()
    error = None
    if request.method == "GET":
        form.spec_text.data = specs.template()
    if not current_user.may_organise:
        error = "Creating competitions needs the organiser level: ask an administrator to grant it."
    elif request.method == "POST" and not form.validate_on_submit():
        error = _form_problem(form)
    elif form.validate_on_submit():
        try:
            text = (form.spec_text.data or "").strip()
            if form.spec.data and getattr(form.spec.data, "filename", ""):
                text = form.spec.data.read().decode("utf-8", errors="replace")
            if not text.strip():
                raise ApiError("give the spec: write it in the box, or upload its file")
            spec = specs.parse_spec(text)
            files = specs.uploaded(
                [(f.filename, f.read()) for f in form.folder.data or [] if f and f.filename],
                in_folder=True,
            )
            for key, data in specs.uploaded(
                [(f.filename, f.read()) for f in form.files.data or [] if f and f.filename]
            ).items():
                if key in files:
                    raise ApiError(f"two files are named {key!r}: send it once")
                files[key] = data
            competition = specs.create(
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
    competition = core.find(current_user, slug)
    form = SelectForm()
    if form.validate_on_submit():
        if not (form.submission.data or "").isdigit():
            flash("no such submission", "error")
            return redirect(url_for("competitions.detail", slug=slug))
        try:
            submissions.select_final(
                current_user,
                competition,
                int(form.submission.data),
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
    path = rounds.published_inputs(core.find_round(competition, number), _store())
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
    page = max(request.args.get("page", 1, type=int), 1)
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
