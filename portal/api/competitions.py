"""Competitions: specs, rounds, teams, submissions and leaderboards."""

from __future__ import annotations

import json

import yaml
from flask import Response, current_app, g, request
from flask_smorest import Blueprint
from marshmallow import ValidationError

from portal.api.code import artifact_store
from portal.api.guards import BEARER, token_optional, token_required
from portal.api.schemas import (
    CompetitionEditIn,
    CompetitionOut,
    CompetitionSpec,
    CompetitionTeamIn,
    CompetitionTeamOut,
    InviteIn,
    JoinIn,
    LeaderboardArgs,
    LeaderboardOut,
    MyTeamOut,
    ReasonIn,
    RescoreOut,
    RoundEditIn,
    RoundOut,
    SelectIn,
    SubmissionListArgs,
    SubmissionOut,
    SubmitFileArgs,
    SubmitSessionIn,
)
from portal.errors import ApiError, Conflict, NotFound, first_problem
from portal.services import competitions as service
from portal.services import leaderboard as boards
from portal.services import submissions

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
    files = {name: part.read() for name, part in request.files.items()}
    return parse_spec(text), files


def parse_spec(text: str) -> dict:
    """A spec's YAML (or JSON) text, validated; ApiError names the first problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ApiError(f"the spec is not YAML or JSON: {exc}", code="invalid_spec") from exc
    if not isinstance(raw, dict):
        raise ApiError("the spec must be a mapping", code="invalid_spec")
    try:
        spec = CompetitionSpec().load(json.loads(json.dumps(raw, default=str)))
    except ValidationError as exc:
        raise ApiError(
            f"the spec is invalid: {first_problem(exc.messages)}",
            code="invalid_spec",
            status=422,
            details=exc.messages,
        ) from exc
    return spec


@blp.route("")
@blp.doc(security=[*BEARER, {}])
@blp.response(200, CompetitionOut(many=True))
@token_optional
def list_competitions():
    """Public competitions, and those the caller organises or entered."""
    return [service.competition_dict(c) for c in service.listed(g.user)]


@blp.route("", methods=["POST"])
@blp.doc(security=BEARER, requestBody=SPEC_BODY)
@blp.response(201, CompetitionOut)
@token_required()
def create_competition():
    """Create a competition from a spec and its files; the caller organises it (which
    needs the organiser level)."""
    service.require_organiser_level(g.user)  # before reading what they sent
    spec, files = _spec_from_form()
    competition = service.create(g.user, spec, files, artifact_store(), _public_key())
    return service.competition_dict(competition)


@blp.route("/<slug>")
@blp.doc(security=[*BEARER, {}])
@blp.response(200, CompetitionOut)
@token_optional
def get_competition(slug: str):
    return service.competition_dict(service.find(g.user, slug))


@blp.route("/<slug>", methods=["PATCH"])
@blp.doc(security=BEARER)
@blp.arguments(CompetitionEditIn)
@blp.response(200, CompetitionOut)
@token_required()
def edit_competition(changes, slug: str):
    """Change the title, description or visibility (organisers); `private` is a draft
    only its organisers see."""
    competition = service.find(g.user, slug)
    return service.competition_dict(service.edit(g.user, competition, changes))


@blp.route("/<slug>/rounds/<int:number>", methods=["PATCH"])
@blp.doc(security=BEARER)
@blp.arguments(RoundEditIn)
@blp.response(200, RoundOut)
@token_required()
def edit_round(changes, slug: str, number: int):
    """Change a round before it starts; once started, only its metric (which scores
    every submission again)."""
    competition = service.find(g.user, slug)
    round_ = service.find_round(competition, number)
    if service.edit_round(g.user, competition, round_, changes):
        submissions.rescore(g.user, round_, _redis())
    return service.round_dict(round_)


@blp.route("/<slug>/rounds/<int:number>/labels", methods=["PUT"])
@blp.doc(security=BEARER, requestBody=CSV_BODY)
@blp.response(200, RescoreOut)
@token_required()
def replace_labels(slug: str, number: int):
    """Replace a round's hidden labels (`id,label`) and score every submission again."""
    competition = service.find(g.user, slug)
    service.require_organiser(g.user, competition)
    round_ = service.find_round(competition, number)
    service.set_labels(round_, request.get_data(cache=False), artifact_store(), _public_key())
    round_.revision += 1
    return {"queued": submissions.rescore(g.user, round_, _redis())}


@blp.route("/<slug>/rounds/<int:number>/rescore", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(202, RescoreOut)
@token_required()
def rescore(slug: str, number: int):
    """Score every submission of the round again."""
    competition = service.find(g.user, slug)
    return {
        "queued": submissions.rescore(g.user, service.find_round(competition, number), _redis())
    }


# Teams ------------------------------------------------------------------------------


@blp.route("/<slug>/team")
@blp.doc(security=BEARER)
@blp.response(200, MyTeamOut)
@token_required()
def my_team(slug: str):
    """The caller's team here (with its invite code), and the invitations waiting."""
    competition = service.find(g.user, slug)
    mine = service.membership(g.user, competition)
    return {
        "team": service.team_dict(mine.team, private=True) if mine else None,
        "invitations": sorted(i.team.name for i in service.invites_for(g.user, competition)),
    }


@blp.route("/<slug>/teams", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(CompetitionTeamIn)
@blp.response(201, CompetitionTeamOut)
@token_required()
def create_team(payload, slug: str):
    competition = service.find(g.user, slug)
    return service.team_dict(
        service.create_team(g.user, competition, payload["name"]), private=True
    )


@blp.route("/<slug>/team/invites", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(InviteIn)
@blp.response(201, CompetitionTeamOut)
@token_required()
def invite(payload, slug: str):
    """Invite a user into the caller's team; they accept with `join`."""
    competition = service.find(g.user, slug)
    invitation = service.invite(g.user, competition, payload["username"])
    return service.team_dict(invitation.team, private=True)


@blp.route("/<slug>/team/join", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(JoinIn)
@blp.response(200, CompetitionTeamOut)
@token_required()
def join(payload, slug: str):
    """Accept an invitation (`team`) or join with an invite code (`code`)."""
    competition = service.find(g.user, slug)
    team = service.join(g.user, competition, team=payload["team"], code=payload["code"])
    return service.team_dict(team, private=True)


@blp.route("/<slug>/team/leave", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(204)
@token_required()
def leave(slug: str):
    service.leave(g.user, service.find(g.user, slug))


@blp.route("/<slug>/teams/<name>/disqualify", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ReasonIn)
@blp.response(200, CompetitionTeamOut)
@token_required()
def disqualify_team(payload, slug: str, name: str):
    """Disqualify a team (organisers); its members read the reason."""
    competition = service.find(g.user, slug)
    team = service.find_team(competition, name)
    submissions.disqualify_team(g.user, competition, team, payload["reason"], _redis())
    return service.team_dict(team)


# Submissions ------------------------------------------------------------------------


@blp.route("/<slug>/submissions", methods=["POST"])
@blp.doc(security=BEARER, requestBody=CSV_BODY)
@blp.arguments(SubmitFileArgs, location="query")
@blp.response(201, SubmissionOut)
@token_required()
def submit_file(args, slug: str):
    """Submit a predictions CSV (`id,prediction`, one row per test id)."""
    competition = service.find(g.user, slug)
    submission = submissions.submit_file(
        g.user,
        competition,
        request.get_data(cache=False),
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
    competition = service.find(g.user, slug)
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
    competition = service.find(g.user, slug)
    round_ = service.find_round(competition, args["round"]) if args["round"] else None
    organiser = service.is_organiser(g.user, competition)
    if args["team"]:
        team = service.find_team(competition, args["team"])
        mine = service.membership(g.user, competition)
        if not organiser and (mine is None or mine.team_id != team.id):
            raise NotFound(f"no team {args['team']!r} of yours")
    else:
        team = service.team_of(g.user, competition)
    return [
        submissions.submission_dict(s, private=organiser)
        for s in submissions.team_submissions(team, round_)
    ]


@blp.route("/<slug>/submissions/<int:submission_id>")
@blp.doc(security=BEARER)
@blp.response(200, SubmissionOut)
@token_required()
def get_submission(slug: str, submission_id: int):
    competition = service.find(g.user, slug)
    submission = submissions.visible(
        g.user, competition, submissions.find(competition, submission_id)
    )
    return submissions.submission_dict(
        submission, private=service.is_organiser(g.user, competition)
    )


@blp.route("/<slug>/submissions/<int:submission_id>/select", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(SelectIn)
@blp.response(200, SubmissionOut)
@token_required()
def select(payload, slug: str, submission_id: int):
    """Select (or unselect) a submission for the final, private ranking."""
    competition = service.find(g.user, slug)
    submission = submissions.find(competition, submission_id)
    mine = service.membership(g.user, competition)
    if mine is None or mine.team_id != submission.team_id:
        raise NotFound(f"no submission {submission_id} of your team")
    submissions.select_final(g.user, submission, payload["selected"])
    if _redis() is not None:
        boards.board(_redis(), submission.round).changed()
    return submissions.submission_dict(submission)


@blp.route("/<slug>/submissions/<int:submission_id>/disqualify", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ReasonIn)
@blp.response(200, SubmissionOut)
@token_required()
def disqualify(payload, slug: str, submission_id: int):
    competition = service.find(g.user, slug)
    submission = submissions.find(competition, submission_id)
    submissions.disqualify_submission(g.user, submission, payload["reason"], _redis())
    return submissions.submission_dict(submission, private=True)


# Leaderboards -----------------------------------------------------------------------


def leaderboard_body(competition, round_, board: str, offset: int, limit: int) -> dict:
    state = service.round_state(round_)
    body = {
        "competition": competition.slug,
        "round": round_.number,
        "board": board,
        "state": state,
        "metric": round_.metric,
        "higher_is_better": round_.higher_is_better,
    }
    if board == "private":
        if state != "ended" and not service.is_organiser(g.user, competition):
            raise Conflict(f"the private leaderboard shows once round {round_.number} ends")
        rows = boards.private_board(_redis(), round_)
        return {
            **body,
            "total": len(rows),
            "version": 0,
            "rows": rows[offset : offset + limit],
        }
    if _redis() is None:
        raise ApiError("the leaderboard needs Redis", code="unavailable", status=503)
    return {**body, **boards.board(_redis(), round_).cached_page(offset, limit)}


@blp.route("/<slug>/leaderboard")
@blp.route("/<slug>/rounds/<int:number>/leaderboard")
@blp.doc(security=[*BEARER, {}])
@blp.arguments(LeaderboardArgs, location="query")
@blp.response(200, LeaderboardOut)
@token_optional
def leaderboard(args, slug: str, number: int | None = None):
    """A round's leaderboard (the open round's by default): public scores live; the
    private board once the round has ended. Ties go to the earlier submission."""
    competition = service.find(g.user, slug)
    round_ = service.find_round(competition, number)
    body = leaderboard_body(competition, round_, args["board"], args["offset"], args["limit"])
    if args["board"] == "public":
        # The most read document of the platform: serialised once per board version.
        key = (round_.id, args["offset"], args["limit"], body["state"], body["version"])
        text = _SERIALISED.get(key)
        if text is None:
            if len(_SERIALISED) > 1024:
                _SERIALISED.clear()
            text = _SERIALISED[key] = json.dumps(LeaderboardOut().dump(body))
        return Response(text, mimetype="application/json")
    return body


# (round id, offset, limit, state, version) -> the public board's JSON.
_SERIALISED: dict[tuple, str] = {}


@blp.route("/<slug>/rounds/<int:number>/ranking.csv")
@blp.doc(security=BEARER)
@blp.response(200, description="the final ranking as CSV")
@token_required()
def ranking(slug: str, number: int):
    """The final (private) ranking, for organisers."""
    competition = service.find(g.user, slug)
    service.require_organiser(g.user, competition)
    round_ = service.find_round(competition, number)
    return Response(
        submissions.ranking_csv(round_, _redis()),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={slug}-round{number}-ranking.csv"},
    )
