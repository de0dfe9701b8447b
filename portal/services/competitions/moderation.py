"""What organisers do to a running competition: disqualify a submission or a team,
change a round, replace its labels, score it again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis import Redis

from portal.extensions import db
from portal.models import Competition, CompetitionTeam, Round, Submission, User
from portal.services.artifacts import ArtifactStore
from portal.services.competitions import (
    announcements,
    boards,
    entrants,
    grading,
    rounds,
    submissions,
)
from portal.services.competitions.core import find_round, require_organiser


def disqualify_submission(
    user: User, competition: Competition, submission_id: int, reason: str, redis: Redis | None
) -> Submission:
    """Disqualify one submission: it leaves the boards and cannot be selected."""
    require_organiser(user, competition)
    submission = submissions.find(competition, submission_id)
    submission.disqualified_reason = reason
    announcements.submission_outcome(submission)
    db.session.commit()
    if redis is not None:
        boards.board(redis, submission.round).invalidate()
    grading.team_changed(redis, submission.team_id)
    return submission


def disqualify_team(
    user: User, competition: Competition, team_name: str, reason: str, redis: Redis | None
) -> CompetitionTeam:
    """Disqualify a team: it leaves every round's boards and submits no more."""
    require_organiser(user, competition)
    team = entrants.find_team(competition, team_name)
    team.disqualified_reason = reason
    announcements.team_disqualified(team, competition)
    db.session.commit()
    if redis is not None:
        for round_ in competition.rounds:
            boards.board(redis, round_).invalidate()
    return team


def change_round(
    user: User,
    competition: Competition,
    number: int,
    changes: Mapping[str, Any],
    redis: Redis | None,
) -> Round:
    """Edit a round (`rounds.edit_round` says what may change when); a new metric scores
    every submission again."""
    round_ = find_round(competition, number)
    if rounds.edit_round(user, competition, round_, changes):
        grading.rescore(round_, redis)
        if redis is not None:  # its scores may have changed direction: none is shown stale
            boards.board(redis, round_).invalidate()
    return round_


def replace_labels(
    user: User,
    competition: Competition,
    number: int,
    labels: bytes,
    store: ArtifactStore,
    public_key: str,
    redis: Redis | None,
) -> int:
    """Replace a round's hidden labels and score every submission again; returns how
    many were queued."""
    require_organiser(user, competition)
    round_ = find_round(competition, number)
    rounds.set_labels(round_, labels, store, public_key)
    round_.revision += 1
    return grading.rescore(round_, redis)


def rescore_round(user: User, competition: Competition, number: int, redis: Redis | None) -> int:
    """Score every submission of a round again; returns how many were queued."""
    require_organiser(user, competition)
    return grading.rescore(find_round(competition, number), redis)
