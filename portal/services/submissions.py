"""Submissions: a predictions file, or a session's checkpoint graded in a sandbox.

A file is checked before it is accepted: one that fails (not a CSV, wrong columns,
missing or repeated ids, missing values, wrong row count) is refused with the first
problem and does not count against the quotas. An accepted submission counts however
it scores. A checkpoint is handed to a grading session (no network, time and memory
limits) whose predictions are checked the same way when it ends.
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select

from grader.metrics import METRICS
from portal.errors import ApiError, Conflict, NotFound
from portal.extensions import db
from portal.models import (
    COUNTED_STATUSES,
    Checkpoint,
    Competition,
    CompetitionTeam,
    Round,
    Session,
    SessionKind,
    Submission,
    SubmissionStatus,
    User,
)
from portal.queue import grader_queue
from portal.services import competitions, tables
from portal.services import leaderboard as boards
from portal.services import sessions as session_service
from portal.services.artifacts import ArtifactStore
from portal.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)

MAX_PREDICTIONS_BYTES = 64 * 1024 * 1024


# Rules ---------------------------------------------------------------------------------


def qualified(round_: Round, redis: Redis | None) -> set[int] | None:
    """Team ids allowed into `round_`: the previous round's top `advance_top` by private
    score; None when every team may enter (first round, or no cut)."""
    previous = next((r for r in round_.competition.rounds if r.number == round_.number - 1), None)
    if previous is None or previous.advance_top is None:
        return None
    ranking = boards.private_board(redis, previous)
    return {row["team_id"] for row in ranking[: previous.advance_top]}


def _check_quota(team: CompetitionTeam, round_: Round) -> None:
    # Serialise submissions of one team (PostgreSQL row lock; SQLite has one writer).
    db.session.execute(
        select(CompetitionTeam.id).where(CompetitionTeam.id == team.id).with_for_update()
    )
    counted = (
        select(func.count(Submission.id))
        .where(Submission.round_id == round_.id, Submission.team_id == team.id)
        .where(Submission.status.in_(COUNTED_STATUSES))
    )
    total = db.session.scalar(counted) or 0
    if total >= round_.total_quota:
        raise ApiError(
            f"team {team.name} has used all {round_.total_quota} submissions of round "
            f"{round_.number}",
            code="quota_exceeded",
            status=429,
        )
    midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    today = db.session.scalar(counted.where(Submission.created_at >= midnight)) or 0
    if today >= round_.daily_quota:
        raise ApiError(
            f"team {team.name} has used its {round_.daily_quota} submissions of today "
            f"(UTC); more from {isoformat(midnight + timedelta(days=1))}",
            code="quota_exceeded",
            status=429,
        )


def _check_entry(
    user: User, competition: Competition, round_number: int | None, redis: Redis | None
) -> tuple[CompetitionTeam | None, Round]:
    """The user's team (None if they have none yet) and the round, once the rules allow
    a submission. Changes nothing: a refused submission leaves no team behind."""
    round_ = competitions.find_round(competition, round_number)
    mine = competitions.membership(user, competition)
    team = mine.team if mine is not None else None
    competitions.may_submit(team, round_, qualified(round_, redis))
    if team is not None:
        _check_quota(team, round_)
    return team, round_


def validate_predictions(
    round_: Round, data: bytes, store: ArtifactStore, ids: list[str] | None = None
) -> list[str]:
    metric = METRICS.get(round_.metric)
    return tables.read_column(
        data,
        ids if ids is not None else competitions.read_ids(store, round_),
        columns=tables.PREDICTION_COLUMNS,
        what="predictions file",
        numeric=bool(metric and metric.numeric),
        probabilities=bool(metric and metric.binary),
    )


def _enqueue_scoring(redis: Redis | None, submission: Submission) -> None:
    if redis is None:
        return
    try:
        grader_queue(redis).enqueue(
            "grader.jobs.score_submission",
            submission.id,
            job_id=f"score-{submission.id}",
            job_timeout=600,
        )
    except RedisError:
        # The grader's sweep queues every submission left `scoring`: nothing is lost.
        log.exception("could not queue the scoring of submission %s", submission.id)


def _counted(redis: Redis | None, submission: Submission) -> None:
    if redis is None:
        return
    try:
        board = boards.board(redis, submission.round)
        board.count(submission.team_id, submission.team.name, submission.created_at)
        board.changed()
    except RedisError:
        log.exception("leaderboard cache not updated for submission %s", submission.id)


# Submitting ----------------------------------------------------------------------------


def submit_file(
    user: User,
    competition: Competition,
    data: bytes,
    store: ArtifactStore,
    redis: Redis | None,
    *,
    round_number: int | None = None,
    memo: str = "",
) -> Submission:
    if len(data) > MAX_PREDICTIONS_BYTES:
        raise ApiError("the predictions file is larger than 64 MiB", code="too_large", status=413)
    team, round_ = _check_entry(user, competition, round_number, redis)
    validate_predictions(round_, data, store)
    team = team or competitions.team_of(user, competition, create=True)
    digest, _ = store.put(io.BytesIO(data), max_bytes=MAX_PREDICTIONS_BYTES)
    submission = Submission(
        round_id=round_.id,
        team_id=team.id,
        user_id=user.id,
        source="file",
        predictions_digest=digest,
        status=SubmissionStatus.SCORING.value,
        memo=memo,
    )
    db.session.add(submission)
    db.session.commit()
    _counted(redis, submission)
    _enqueue_scoring(redis, submission)
    return submission


def submit_session(
    user: User,
    competition: Competition,
    ref: str,
    redis: Redis | None,
    *,
    round_number: int | None = None,
    memo: str = "",
) -> Submission:
    """Grade `USER/N[:CHECKPOINT]` (the latest checkpoint without one)."""
    ident, _, checkpoint_name = ref.partition(":")
    source = session_service.find_session(user, ident)
    query = select(Checkpoint).where(Checkpoint.session_id == source.id)
    if checkpoint_name:
        query = query.where(Checkpoint.name == checkpoint_name)
    checkpoint = db.session.scalar(
        query.order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
    )
    if checkpoint is None:
        raise NotFound(
            f"session {source.ident} has no checkpoint {checkpoint_name!r}"
            if checkpoint_name
            else f"session {source.ident} has saved no checkpoint"
        )
    team, round_ = _check_entry(user, competition, round_number, redis)
    team = team or competitions.team_of(user, competition, create=True)
    request = session_service.SessionRequest(
        entry=source.entry,
        code_digest=source.code_digest,
        code_bytes=source.code_bytes,
        args=source.args,
        gpus=source.gpus,
        cpus=1.0,
        memory_mb=round_.memory_mb,
        image=source.image,
        environment=source.environment,
        gpu_models=tuple(sorted(source.gpu_model_set)),
        memo=f"grading {source.ident}:{checkpoint.name} for {competition.slug} round "
        f"{round_.number}",
    )
    grading = session_service.create_session(user, request, redis=None)
    grading.kind = SessionKind.GRADING.value
    grading.forked_from = source.ident
    grading.resume_checkpoint = checkpoint.name
    db.session.add(
        Checkpoint(
            session_id=grading.id,
            name=checkpoint.name,
            digest=checkpoint.digest,
            size=checkpoint.size,
        )
    )
    submission = Submission(
        round_id=round_.id,
        team_id=team.id,
        user_id=user.id,
        source="session",
        session_ref=f"{source.ident}:{checkpoint.name}",
        grading_session_id=grading.id,
        status=SubmissionStatus.GRADING.value,
        memo=memo,
    )
    db.session.add(submission)
    db.session.commit()
    _counted(redis, submission)
    if redis is not None:
        session_service._wake(redis)
    return submission


def for_grading_session(session: Session) -> Submission | None:
    return db.session.scalar(select(Submission).where(Submission.grading_session_id == session.id))


def grading_predictions(
    session: Session, data: bytes, store: ArtifactStore, redis: Redis | None
) -> Submission:
    """A grading session's predictions: checked, then queued for scoring, or the
    submission is invalid (and stops counting) with the first problem."""
    submission = for_grading_session(session)
    if submission is None or submission.status != SubmissionStatus.GRADING.value:
        raise Conflict("this session grades no submission that waits for predictions")
    try:
        validate_predictions(submission.round, data, store)
    except tables.TableError as exc:
        submission.status = SubmissionStatus.INVALID.value
        submission.error = exc.message
        db.session.commit()
        return submission
    submission.predictions_digest, _ = store.put(io.BytesIO(data), max_bytes=MAX_PREDICTIONS_BYTES)
    submission.status = SubmissionStatus.SCORING.value
    db.session.commit()
    _enqueue_scoring(redis, submission)
    return submission


def grading_ended(session: Session) -> None:
    """Called once a grading session has its final state."""
    submission = for_grading_session(session)
    if submission is None or submission.status != SubmissionStatus.GRADING.value:
        return
    if session.status == "completed":
        error = "the grading run wrote no predictions (did the code call sdk.bind(infer=...)?)"
    else:
        error = f"the grading run {session.status}: {session.status_reason}".rstrip(": ")
    submission.status = SubmissionStatus.FAILED.value
    submission.error = error
    db.session.commit()


# Choices and moderation ----------------------------------------------------------------


def find(competition: Competition, submission_id: int) -> Submission:
    submission = db.session.get(Submission, submission_id)
    if submission is None or submission.round.competition_id != competition.id:
        raise NotFound(f"no submission {submission_id} in {competition.slug}")
    return submission


def visible(user: User, competition: Competition, submission: Submission) -> Submission:
    if competitions.is_organiser(user, competition):
        return submission
    mine = competitions.membership(user, competition)
    if mine is None or mine.team_id != submission.team_id:
        raise NotFound(f"no submission {submission.id} of your team")
    return submission


def select_final(user: User, submission: Submission, selected: bool) -> Submission:
    round_ = submission.round
    if competitions.round_state(round_) == "ended":
        raise Conflict(f"round {round_.number} has ended: final selections are closed")
    if submission.status != SubmissionStatus.SCORED.value:
        raise Conflict(f"submission {submission.id} is {submission.status}, not scored")
    if selected and not submission.selected:
        count = db.session.scalar(
            select(func.count(Submission.id)).where(
                Submission.round_id == round_.id,
                Submission.team_id == submission.team_id,
                Submission.selected.is_(True),
            )
        )
        if (count or 0) >= round_.final_selections:
            raise Conflict(
                f"your team has selected {round_.final_selections} submissions already: "
                "unselect one first"
            )
    submission.selected = selected
    db.session.commit()
    return submission


def disqualify_submission(
    user: User, submission: Submission, reason: str, redis: Redis | None
) -> None:
    competitions.require_organiser(user, submission.round.competition)
    submission.disqualified_reason = reason
    db.session.commit()
    if redis is not None:
        boards.board(redis, submission.round).invalidate()


def disqualify_team(
    user: User, competition: Competition, team: CompetitionTeam, reason: str, redis: Redis | None
) -> None:
    competitions.require_organiser(user, competition)
    team.disqualified_reason = reason
    db.session.commit()
    if redis is not None:
        for round_ in competition.rounds:
            boards.board(redis, round_).invalidate()


def rescore(user: User, round_: Round, redis: Redis | None) -> int:
    """Queue the scoring of every submission of the round with predictions again."""
    competitions.require_organiser(user, round_.competition)
    ids = list(
        db.session.scalars(
            select(Submission.id).where(
                Submission.round_id == round_.id,
                Submission.predictions_digest != "",
                Submission.status.in_(
                    [
                        SubmissionStatus.SCORED.value,
                        SubmissionStatus.FAILED.value,
                        SubmissionStatus.SCORING.value,
                    ]
                ),
            )
        )
    )
    if ids:
        db.session.execute(
            Submission.__table__.update()
            .where(Submission.id.in_(ids))
            .values(status=SubmissionStatus.SCORING.value)
        )
    db.session.commit()
    if redis is not None:
        grader_queue(redis).enqueue("grader.jobs.rescore_round", round_.id, job_timeout=3600)
    return len(ids)


def ranking_csv(round_: Round, redis: Redis | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "rank",
            "team",
            "members",
            "private_score",
            "public_score",
            "submission",
            "submitted_at",
            "submissions",
        ]
    )
    teams = {
        t.id: t
        for t in db.session.scalars(
            select(CompetitionTeam).where(CompetitionTeam.competition_id == round_.competition_id)
        )
    }
    for row in boards.private_board(redis, round_):
        members = " ".join(sorted(m.user.username for m in teams[row["team_id"]].members))
        writer.writerow(
            [
                row["rank"],
                row["team"],
                members,
                row["score"],
                row["public_score"],
                row["submission"],
                row["best_at"],
                row["submissions"],
            ]
        )
    return out.getvalue()


def team_submissions(team: CompetitionTeam, round_: Round | None = None) -> list[Submission]:
    query = select(Submission).where(Submission.team_id == team.id)
    if round_ is not None:
        query = query.where(Submission.round_id == round_.id)
    return list(db.session.scalars(query.order_by(Submission.id.desc())))


def submission_dict(submission: Submission, *, private: bool = False) -> dict[str, Any]:
    round_ = submission.round
    show_private = private or competitions.round_state(round_) == "ended"
    return {
        "id": submission.id,
        "round": round_.number,
        "team": submission.team.name,
        "user": submission.user.username,
        "source": submission.source,
        "session": submission.session_ref or None,
        "status": submission.status,
        "error": submission.error or None,
        "public_score": submission.public_score,
        "private_score": submission.private_score if show_private else None,
        "selected": submission.selected,
        "disqualified_reason": submission.disqualified_reason or None,
        "memo": submission.memo,
        "created_at": isoformat(submission.created_at),
        "scored_at": isoformat(submission.scored_at),
    }


def history(round_: Round, team_ids: list[int]) -> list[dict[str, Any]]:
    """These teams' best public score over time, in the order given: one series per
    team, a point at each submission that improved it (for the leaderboard's plot).
    Reads only their submissions, whatever the size of the round."""
    if not team_ids:
        return []
    rows = db.session.execute(
        select(Submission.team_id, Submission.public_score, Submission.created_at)
        .where(
            Submission.round_id == round_.id,
            Submission.team_id.in_(team_ids),
            Submission.status == SubmissionStatus.SCORED.value,
            Submission.disqualified_reason == "",
            Submission.public_score.is_not(None),
        )
        .order_by(Submission.created_at, Submission.id)
    ).all()
    sign = 1.0 if round_.higher_is_better else -1.0
    series: dict[int, list[tuple[datetime, float]]] = {}
    for team_id, score, created_at in rows:
        score = float(score or 0.0)
        points = series.setdefault(team_id, [])
        if not points or sign * score > sign * points[-1][1]:
            points.append((created_at, score))
    names = dict(
        db.session.execute(
            select(CompetitionTeam.id, CompetitionTeam.name).where(CompetitionTeam.id.in_(team_ids))
        ).all()
    )
    return [
        {"team": names[t], "points": [(isoformat(when), score) for when, score in series[t]]}
        for t in team_ids
        if t in series
    ]
