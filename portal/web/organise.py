"""What organisers do in the browser: create a competition (from a template, a spec
file or text, and its files one by one or as the spec's folder), and each competition's
panel: visibility, rounds, labels, rescoring, every team's submissions, disqualification,
reproductions and the final ranking. Each action is one service function the API calls too."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, MultipleFileField
from wtforms import (
    DateTimeLocalField,
    FloatField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from portal.api.code import artifact_store
from portal.errors import ApiError, NotFound
from portal.extensions import db
from portal.services.competitions import (
    core,
    entrants,
    exports,
    moderation,
    reproductions,
    rounds,
    specs,
    submissions,
)
from portal.services.competitions.spec_schema import METRIC_NAMES
from portal.web.forms import form_problem, page_arg, parse_id, query_int

bp = Blueprint("organise", __name__, url_prefix="/competitions")


class CreateForm(FlaskForm):
    spec_text = TextAreaField("The spec (YAML or JSON)", validators=[Length(max=200_000)])
    spec = FileField("… or its file")
    folder = MultipleFileField("The spec's folder, with the files it names")
    files = MultipleFileField("… or the files it names, one by one")


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
    return redirect(url_for("organise.panel", slug=slug, **query))


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
def panel(slug: str):
    """The organiser's panel: visibility, rounds, labels, every team's submissions (with
    filters), disqualification, the final ranking."""
    competition = _organised(slug)
    page = page_arg()
    found, total = submissions.search(
        current_user,
        competition,
        team_name=request.args.get("team") or None,
        status=request.args.get("status") or None,
        round_number=query_int("round"),
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
        reproduced=[
            reproductions.reproduction_dict(r)
            for r in reproductions.listed(current_user, competition, limit=ORGANISER_PAGE)
        ],
        total=total,
        page=page,
        pages=max(1, -(-total // ORGANISER_PAGE)),
        filters={key: value for key, value in request.args.items() if key != "page"},
        reason_form=ReasonForm(),
        labels_form=LabelsForm(),
        visibility_form=VisibilityForm(visibility=competition.visibility),
        statuses=["grading", "scoring", "scored", "failed", "invalid", "errored", "disqualified"],
        after_start=sorted(rounds.AFTER_START - {"higher_is_better"}),
    )


@bp.route("/<slug>/organise/visibility", methods=["POST"])
@login_required
def set_visibility(slug: str):
    competition = _organised(slug)
    form = VisibilityForm()
    if not form.validate_on_submit():
        flash(form_problem(form), "error")
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
        flash(f"round {number}: {form_problem(form)}", "error")
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
        flash(form_problem(form), "error")
        return _to_panel(slug)
    labels = form.labels.data.read()
    redis = current_app.extensions.get("redis")
    public_key = current_app.config.get("GRADER_PUBLIC_KEY") or ""

    def change() -> str:
        queued = moderation.replace_labels(
            current_user, competition, number, labels, artifact_store(), public_key, redis
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


@bp.route("/<slug>/organise/reproduce/<int:submission_id>", methods=["POST"])
@login_required
def reproduce(slug: str, submission_id: int):
    """Re-run a model submission's training and grade it against the same round."""
    competition = _organised(slug)
    if not FlaskForm().validate_on_submit():
        flash("the form has expired: load the page again", "error")
        return _to_panel(slug)

    def change() -> str:
        made = reproductions.start(
            current_user,
            competition,
            submission_id,
            artifact_store(),
            current_app.extensions.get("redis"),
        )
        shown = reproductions.reproduction_dict(made)
        return (
            f"reproduction {made.id}: {shown['training_session']} runs the training of "
            f"submission {submission_id} again"
        )

    return _organiser_act(slug, change)


@bp.route("/<slug>/organise/reproductions/<int:reproduction_id>/stop", methods=["POST"])
@login_required
def stop_reproduction(slug: str, reproduction_id: int):
    competition = _organised(slug)
    if not FlaskForm().validate_on_submit():
        flash("the form has expired: load the page again", "error")
        return _to_panel(slug)

    def change() -> str:
        reproductions.stop(
            current_user, competition, reproduction_id, current_app.extensions.get("redis")
        )
        return f"reproduction {reproduction_id} is stopping"

    return _organiser_act(slug, change)


@bp.route("/<slug>/organise/disqualify/<what>/<name>", methods=["POST"])
@login_required
def disqualify(slug: str, what: str, name: str):
    """Disqualify a submission (`what` = submission, `name` its id) or a team."""
    competition = _organised(slug)
    form = ReasonForm()
    if not form.validate_on_submit():
        flash(f"disqualifying needs a reason: {form_problem(form)}", "error")
        return _to_panel(slug)
    reason = form.reason.data or ""
    redis = current_app.extensions.get("redis")
    submission_id = parse_id(name)
    if what == "submission" and submission_id is not None:

        def change() -> str:
            moderation.disqualify_submission(
                current_user, competition, submission_id, reason, redis
            )
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
        error = form_problem(form)
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
                artifact_store(),
                current_app.config.get("GRADER_PUBLIC_KEY") or "",
            )
        except ApiError as exc:
            db.session.rollback()
            error = exc.message
        else:
            return redirect(url_for("competitions.detail", slug=competition.slug))
    return render_template("competitions/new.html", form=form, error=error)
