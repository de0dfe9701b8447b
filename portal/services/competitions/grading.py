"""Grading: predictions checked against a round, queued for the grader; a grading
session's predictions and its end; scoring a round's submissions again.

Nothing here reaches the sessions service: the session lifecycle calls
`grading_ended` when a grading session ends.
"""

from __future__ import annotations

import io
import logging

from flask import current_app, has_app_context
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select

from grader.metrics import METRICS
from nodes.monitor import OVER_SHARE
from portal import keys
from portal.errors import Conflict
from portal.extensions import db
from portal.models import Round, Session, SessionStatus, Submission, SubmissionStatus
from portal.queue import grader_queue
from portal.services import tables
from portal.services.artifacts import ArtifactStore
from portal.services.competitions import announcements
from portal.services.competitions.rounds import read_ids

log = logging.getLogger(__name__)

MAX_PREDICTIONS_BYTES = 64 * 1024 * 1024


def team_changed(redis: Redis | None, *team_ids: int) -> None:
    """Tell the teams' open pages that their submissions changed (a new one, a state, a
    score, a selection). Best effort: a page also looks again by itself."""
    if redis is None:
        return
    try:
        for team_id in set(team_ids):
            version = redis.incr(keys.team_version(team_id))
            redis.publish(keys.team_submissions(team_id), version)
    except RedisError:
        log.exception("teams %s not told of their submissions' change", team_ids)


def _app_redis() -> Redis | None:
    """The portal's Redis where this runs inside it (a session's end is seen there)."""
    return current_app.extensions.get("redis") if has_app_context() else None


def validate_predictions(
    round_: Round, data: bytes, store: ArtifactStore, ids: list[str] | None = None
) -> list[str]:
    metric = METRICS.get(round_.metric)
    return tables.read_column(
        data,
        ids if ids is not None else read_ids(store, round_),
        columns=tables.PREDICTION_COLUMNS,
        what="predictions file",
        numeric=bool(metric and metric.numeric),
        probabilities=bool(metric and metric.binary),
    )


def enqueue_scoring(redis: Redis | None, submission: Submission) -> None:
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
        announcements.submission_outcome(submission)
        db.session.commit()
        team_changed(redis, submission.team_id)
        return submission
    submission.predictions_digest, _ = store.put(io.BytesIO(data), max_bytes=MAX_PREDICTIONS_BYTES)
    submission.status = SubmissionStatus.SCORING.value
    db.session.commit()
    team_changed(redis, submission.team_id)
    enqueue_scoring(redis, submission)
    return submission


# A submission is graded at most this many times when the platform fails its grading.
MAX_GRADING_ATTEMPTS = 3


def platform_failure(session: Session) -> str | None:
    """Why a grading session ended for a reason of the platform's, not the submitted
    code's (its node lost, its container never started, the scheduler could not place
    it, stopped by an administrator or for the organiser's credit); None otherwise."""
    status = session.state
    if status in (SessionStatus.LOST, SessionStatus.REJECTED, SessionStatus.STOPPED):
        return f"{status.value}: {session.status_reason}".rstrip(": ")
    if status is SessionStatus.FAILED and session.status_reason.startswith("could not start"):
        return session.status_reason
    if over_its_share(session):
        # The platform chose the share (`GRADING_GPU_SHARE`): graded again on a whole GPU.
        return f"the share of a GPU it was given was too small: {session.status_reason}"
    return None


def over_its_share(session: Session) -> bool:
    """Killed by its node for holding more of a shared GPU's memory than its share."""
    return (
        session.state is SessionStatus.KILLED
        and session.shares_gpu
        and OVER_SHARE in session.status_reason
    )


def grading_ended(session: Session) -> None:
    """Called once a grading session has its final state. A failure of the platform's
    grades the submission again (up to MAX_GRADING_ATTEMPTS), then leaves it `errored`,
    which counts against no quota; only the submitted code's own failure counts."""
    submission = for_grading_session(session)
    if submission is None or submission.status != SubmissionStatus.GRADING.value:
        return
    if (why := platform_failure(session)) is not None:
        if submission.grading_attempts < MAX_GRADING_ATTEMPTS:
            # Sessions import this module: imported when a grading is started again.
            from portal.services.competitions import submissions

            submissions.grade_again(submission, session, why)
            team_changed(_app_redis(), submission.team_id)
            return
        submission.status = SubmissionStatus.ERRORED.value
        submission.error = (
            f"the platform failed to grade it {submission.grading_attempts} times (last: "
            f"{why}): it does not count against your quota"
        )
        announcements.submission_outcome(submission)
        db.session.commit()
        _recount(submission)
        return
    if session.status == "completed":
        error = "the grading run wrote no predictions (did the code call sdk.bind(infer=...)?)"
    else:
        error = f"the grading run {session.status}: {session.status_reason}".rstrip(": ")
    submission.status = SubmissionStatus.FAILED.value
    submission.error = error
    announcements.submission_outcome(submission)
    db.session.commit()
    team_changed(_app_redis(), submission.team_id)


def _recount(submission: Submission) -> None:
    """The board's cached submission counts: rebuilt without one that stopped counting."""
    from portal.services.competitions import boards

    redis = _app_redis()
    team_changed(redis, submission.team_id)
    if redis is not None:
        try:
            boards.board(redis, submission.round).invalidate()
        except RedisError:
            log.exception("the board of round %s was not rebuilt", submission.round_id)


def rescore(round_: Round, redis: Redis | None) -> int:
    """Queue the scoring of every submission of the round with predictions again (who
    may ask for it: `moderation`)."""
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
