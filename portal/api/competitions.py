"""Competitions: specs, rounds, teams, submissions and leaderboards."""

from __future__ import annotations

from flask import Response, current_app, g, request, send_file
from flask_smorest import Blueprint

from portal.api.code import artifact_store
from portal.api.guards import BEARER, read_body, token_optional, token_required
from portal.api.schemas import (
    BundleImportArgs,
    BundleImportOut,
    CompetitionEditIn,
    CompetitionOut,
    CompetitionTeamIn,
    CompetitionTeamOut,
    InviteIn,
    JoinIn,
    LeaderboardArgs,
    LeaderboardOut,
    MyTeamOut,
    ReasonIn,
    ReproductionListArgs,
    ReproductionOut,
    RescoreOut,
    RoundEditIn,
    RoundOut,
    SelectIn,
    SubmissionListArgs,
    SubmissionOut,
    SubmitFileArgs,
    SubmitSessionIn,
)
from portal.errors import ApiError
from portal.services.competitions import (
    boards,
    bundles,
    core,
    entrants,
    exports,
    grading,
    moderation,
    reproductions,
    rounds,
    specs,
    submissions,
)

PREFIX = "/competitions"
blp = Blueprint("api_competitions", __name__, description="Competitions and leaderboards")

SPEC_BODY = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "string", "description": "the spec, YAML or JSON"},
                },
                "additionalProperties": {"type": "string", "format": "binary"},
            }
        }
    },
    "description": "The spec, and each file it names (test inputs, labels, scorer) as a "
    "part whose field name is the file name written in the spec.",
}
CSV_BODY = {"content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}}}


def _redis():
    return current_app.extensions.get("redis")


def _public_key() -> str:
    return current_app.config.get("GRADER_PUBLIC_KEY") or ""


def _spec_from_form() -> tuple[dict, dict[str, bytes]]:
    text = request.form.get("spec")
    if not text:
        raise ApiError("send the spec as the form field `spec`", code="invalid_input")
    spec = specs.parse_spec(text)
    return spec, specs.uploaded([(name, part.read()) for name, part in request.files.items()])


@blp.route("")
@blp.doc(security=[*BEARER, {}])
@blp.response(200, CompetitionOut(many=True))
@token_optional
def list_competitions():
    """Public competitions, and those the caller organises or entered."""
    return [specs.competition_dict(c) for c in core.listed(g.user)]


@blp.route("", methods=["POST"])
@blp.doc(security=BEARER, requestBody=SPEC_BODY)
@blp.response(201, CompetitionOut)
@token_required()
def create_competition():
    """Create a competition from a spec and its files; the caller organises it (which
    needs the organiser level)."""
    core.require_organiser_level(g.user)  # before reading what they sent
    spec, files = _spec_from_form()
    competition = specs.create(g.user, spec, files, artifact_store(), _public_key())
    return specs.competition_dict(competition)


BUNDLE_BODY = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"bundle": {"type": "string", "format": "binary"}},
                "required": ["bundle"],
            }
        }
    },
    "description": "A Codabench (version 2) or CodaLab (1.5) competition bundle: a zip "
    "holding competition.yaml and the files it names.",
}


@blp.route("/import", methods=["POST"])
@blp.doc(security=BEARER, requestBody=BUNDLE_BODY)
@blp.arguments(BundleImportArgs, location="query")
@blp.response(201, BundleImportOut)
@token_required()
def import_bundle(args):
    """Create a competition (a private draft) from a Codabench or CodaLab bundle; the
    report says, line by line, what could not be carried over."""
    core.require_organiser_level(g.user)  # before reading what they sent
    part = request.files.get("bundle")
    if part is None:
        raise ApiError("send the bundle as the form file `bundle`", code="invalid_input")
    data = part.read(bundles.MAX_BUNDLE_BYTES + 1)
    competition, report = bundles.import_bundle(
        g.user,
        data,
        artifact_store(),
        _public_key(),
        slug=args["slug"],
        metric=args["metric"],
    )
    return bundles.report_dict(competition, report)


@blp.route("/<slug>")
@blp.doc(security=[*BEARER, {}])
@blp.response(200, CompetitionOut)
@token_optional
def get_competition(slug: str):
    return specs.competition_dict(core.find(g.user, slug))


@blp.route("/<slug>", methods=["PATCH"])
@blp.doc(security=BEARER)
@blp.arguments(CompetitionEditIn)
@blp.response(200, CompetitionOut)
@token_required()
def edit_competition(changes, slug: str):
    """Change the title, description or visibility (organisers); `private` is a draft
    only its organisers see."""
    competition = core.find(g.user, slug)
    return specs.competition_dict(core.edit(g.user, competition, changes))


@blp.route("/<slug>/rounds/<int:number>", methods=["PATCH"])
@blp.doc(security=BEARER)
@blp.arguments(RoundEditIn)
@blp.response(200, RoundOut)
@token_required()
def edit_round(changes, slug: str, number: int):
    """Change a round before it starts; once started, only its metric (which scores
    every submission again)."""
    competition = core.find(g.user, slug)
    return rounds.round_dict(
        moderation.change_round(g.user, competition, number, changes, _redis())
    )


@blp.route("/<slug>/rounds/<int:number>/labels", methods=["PUT"])
@blp.doc(security=BEARER, requestBody=CSV_BODY)
@blp.response(200, RescoreOut)
@token_required()
def replace_labels(slug: str, number: int):
    """Replace a round's hidden labels (`id,label`) and score every submission again."""
    competition = core.find(g.user, slug)
    labels = read_body(grading.MAX_PREDICTIONS_BYTES)
    queued = moderation.replace_labels(
        g.user, competition, number, labels, artifact_store(), _public_key(), _redis()
    )
    return {"queued": queued}


@blp.route("/<slug>/rounds/<int:number>/rescore", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(202, RescoreOut)
@token_required()
def rescore(slug: str, number: int):
    """Score every submission of the round again."""
    competition = core.find(g.user, slug)
    return {"queued": moderation.rescore_round(g.user, competition, number, _redis())}


# Teams ------------------------------------------------------------------------------


@blp.route("/<slug>/team")
@blp.doc(security=BEARER)
@blp.response(200, MyTeamOut)
@token_required()
def my_team(slug: str):
    """The caller's team here (with its invite code), and the invitations waiting."""
    competition = core.find(g.user, slug)
    mine = core.membership(g.user, competition)
    return {
        "team": entrants.team_dict(mine.team, private=True) if mine else None,
        "invitations": sorted(i.team.name for i in entrants.invites_for(g.user, competition)),
    }


@blp.route("/<slug>/teams", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(CompetitionTeamIn)
@blp.response(201, CompetitionTeamOut)
@token_required()
def create_team(payload, slug: str):
    competition = core.find(g.user, slug)
    return entrants.team_dict(
        entrants.create_team(g.user, competition, payload["name"]), private=True
    )


@blp.route("/<slug>/team/invites", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(InviteIn)
@blp.response(201, CompetitionTeamOut)
@token_required()
def invite(payload, slug: str):
    """Invite a user into the caller's team; they accept with `join`."""
    competition = core.find(g.user, slug)
    invitation = entrants.invite(g.user, competition, payload["username"])
    return entrants.team_dict(invitation.team, private=True)


@blp.route("/<slug>/team/join", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(JoinIn)
@blp.response(200, CompetitionTeamOut)
@token_required()
def join(payload, slug: str):
    """Accept an invitation (`team`) or join with an invite code (`code`)."""
    competition = core.find(g.user, slug)
    team = entrants.join(g.user, competition, team=payload["team"], code=payload["code"])
    return entrants.team_dict(team, private=True)


@blp.route("/<slug>/team/leave", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(204)
@token_required()
def leave(slug: str):
    entrants.leave(g.user, core.find(g.user, slug))


@blp.route("/<slug>/teams/<name>/disqualify", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ReasonIn)
@blp.response(200, CompetitionTeamOut)
@token_required()
def disqualify_team(payload, slug: str, name: str):
    """Disqualify a team (organisers); its members read the reason."""
    competition = core.find(g.user, slug)
    team = moderation.disqualify_team(g.user, competition, name, payload["reason"], _redis())
    return entrants.team_dict(team)


# Submissions ------------------------------------------------------------------------


@blp.route("/<slug>/submissions", methods=["POST"])
@blp.doc(security=BEARER, requestBody=CSV_BODY)
@blp.arguments(SubmitFileArgs, location="query")
@blp.response(201, SubmissionOut)
@token_required()
def submit_file(args, slug: str):
    """Submit a predictions CSV (`id,prediction`, one row per test id)."""
    competition = core.find(g.user, slug)
    submission = submissions.submit_file(
        g.user,
        competition,
        read_body(grading.MAX_PREDICTIONS_BYTES),
        artifact_store(),
        _redis(),
        round_number=args["round"],
        memo=args["memo"],
    )
    return submissions.submission_dict(submission)


@blp.route("/<slug>/submissions/session", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(SubmitSessionIn)
@blp.response(201, SubmissionOut)
@token_required()
def submit_session(payload, slug: str):
    """Submit a session's checkpoint: a grading session restores it and predicts."""
    competition = core.find(g.user, slug)
    submission = submissions.submit_session(
        g.user,
        competition,
        payload["session"],
        _redis(),
        round_number=payload["round"],
        memo=payload["memo"],
    )
    return submissions.submission_dict(submission)


@blp.route("/<slug>/submissions")
@blp.doc(security=BEARER)
@blp.arguments(SubmissionListArgs, location="query")
@blp.response(200, SubmissionOut(many=True))
@token_required()
def list_submissions(args, slug: str):
    """The caller's team's submissions; organisers name any team."""
    competition = core.find(g.user, slug)
    found = submissions.listed(g.user, competition, args["team"], args["round"])
    organiser = core.is_organiser(g.user, competition)
    return [submissions.submission_dict(s, private=organiser) for s in found]


@blp.route("/<slug>/submissions/<int:submission_id>")
@blp.doc(security=BEARER)
@blp.response(200, SubmissionOut)
@token_required()
def get_submission(slug: str, submission_id: int):
    competition = core.find(g.user, slug)
    submission = submissions.shown(g.user, competition, submission_id)
    return submissions.submission_dict(submission, private=core.is_organiser(g.user, competition))


@blp.route("/<slug>/submissions/<int:submission_id>/select", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(SelectIn)
@blp.response(200, SubmissionOut)
@token_required()
def select(payload, slug: str, submission_id: int):
    """Select (or unselect) a submission for the final, private ranking."""
    competition = core.find(g.user, slug)
    submission = submissions.select_final(
        g.user, competition, submission_id, payload["selected"], _redis()
    )
    return submissions.submission_dict(submission)


@blp.route("/<slug>/submissions/<int:submission_id>/disqualify", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ReasonIn)
@blp.response(200, SubmissionOut)
@token_required()
def disqualify(payload, slug: str, submission_id: int):
    competition = core.find(g.user, slug)
    submission = moderation.disqualify_submission(
        g.user, competition, submission_id, payload["reason"], _redis()
    )
    return submissions.submission_dict(submission, private=True)


# Reproductions ----------------------------------------------------------------------


@blp.route("/<slug>/submissions/<int:submission_id>/reproductions", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(201, ReproductionOut)
@token_required()
def reproduce(slug: str, submission_id: int):
    """Run a model submission's training again from its record, and grade the re-run's
    checkpoint against the same round (organisers; paid by the organiser)."""
    competition = core.find(g.user, slug)
    reproduction = reproductions.start(
        g.user, competition, submission_id, artifact_store(), _redis()
    )
    return reproductions.reproduction_dict(reproduction)


@blp.route("/<slug>/reproductions")
@blp.doc(security=BEARER)
@blp.arguments(ReproductionListArgs, location="query")
@blp.response(200, ReproductionOut(many=True))
@token_required()
def list_reproductions(args, slug: str):
    """The competition's reproductions, newest first, with the original and reproduced
    scores side by side (organisers)."""
    competition = core.find(g.user, slug)
    found = reproductions.listed(g.user, competition, args["submission"])
    return [reproductions.reproduction_dict(r) for r in found]


@blp.route("/<slug>/reproductions/<int:reproduction_id>")
@blp.doc(security=BEARER)
@blp.response(200, ReproductionOut)
@token_required()
def get_reproduction(slug: str, reproduction_id: int):
    competition = core.find(g.user, slug)
    return reproductions.reproduction_dict(
        reproductions.shown(g.user, competition, reproduction_id), with_log=True
    )


@blp.route("/<slug>/reproductions/<int:reproduction_id>/stop", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, ReproductionOut)
@token_required()
def stop_reproduction(slug: str, reproduction_id: int):
    competition = core.find(g.user, slug)
    reproduction = reproductions.stop(g.user, competition, reproduction_id, _redis())
    return reproductions.reproduction_dict(reproduction)


# Leaderboards -----------------------------------------------------------------------


@blp.route("/<slug>/leaderboard")
@blp.route("/<slug>/rounds/<int:number>/leaderboard")
@blp.doc(security=[*BEARER, {}])
@blp.arguments(LeaderboardArgs, location="query")
@blp.response(200, LeaderboardOut)
@token_optional
def leaderboard(args, slug: str, number: int | None = None):
    """A round's leaderboard (the open round's by default): public scores live; the
    private board once the round has ended. Ties go to the earlier submission."""
    competition = core.find(g.user, slug)
    round_ = core.find_round(competition, number)
    if args["board"] == boards.PUBLIC:
        text = boards.public_json(competition, round_, args["offset"], args["limit"], _redis())
        return Response(text, mimetype="application/json")
    return boards.view(
        g.user, competition, round_, args["board"], args["offset"], args["limit"], _redis()
    )


@blp.route("/<slug>/rounds/<int:number>/inputs.csv")
@blp.doc(security=[*BEARER, {}])
@blp.response(200, description="the round's test inputs (ids and features, no labels)")
@token_optional
def test_inputs(slug: str, number: int):
    """A round's test inputs, where it publishes them: what a predictions file answers."""
    competition = core.find(g.user, slug)
    path = rounds.published_inputs(core.find_round(competition, number), artifact_store())
    return send_file(
        path,
        mimetype="text/csv",
        as_attachment=True,
        download_name=f"{slug}-round{number}-test.csv",
    )


@blp.route("/<slug>/rounds/<int:number>/ranking.csv")
@blp.doc(security=BEARER)
@blp.response(200, description="the final ranking as CSV")
@token_required()
def ranking(slug: str, number: int):
    """The final (private) ranking, for organisers."""
    competition = core.find(g.user, slug)
    return Response(
        exports.ranking(g.user, competition, number, _redis()),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={slug}-round{number}-ranking.csv"},
    )
