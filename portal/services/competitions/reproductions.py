"""Reproductions: an organiser re-runs a model submission's training from its record
(`submissions.provenance`) and grades the re-run's checkpoint against the same round, to
set the reproduced scores beside the original ones: the check a prize needs.

The re-run is the team's own code, so it runs as a session of the submitter (their data
and rights, never the organiser's), `reproduce/ID`, paid by the organiser like grading
(`credits.payer`). When it completes, its checkpoint of the original's name (or its last)
is graded by an ordinary grading session, and the grader scores the predictions
(`grader.jobs.score_reproduction`). A reproduction counts against no quota and reaches no
leaderboard. States: training → grading → scoring → scored, or failed with the reason.

The session lifecycle calls `training_ended` and `grading_ended` as those sessions end.
"""

from __future__ import annotations

import io
import logging
from typing import Any, cast

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import CursorResult, select, update

from portal.errors import ApiError, Conflict, NotFound
from portal.extensions import db
from portal.models import (
    ACTIVE_REPRODUCTION,
    Checkpoint,
    Competition,
    LogLine,
    Reproduction,
    ReproductionStatus,
    Round,
    Session,
    SessionKind,
    SessionStatus,
    Submission,
    User,
)
from portal.queue import grader_queue
from portal.services import alerts, tables
from portal.services import sessions as session_service
from portal.services.artifacts import ArtifactStore
from portal.services.competitions import grading, submissions
from portal.services.competitions.core import require_organiser
from portal.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)


def start(
    user: User,
    competition: Competition,
    submission_id: int,
    store: ArtifactStore,
    redis: Redis | None,
) -> Reproduction:
    """Run a model submission's training again, as it was submitted: its code, arguments,
    environment, resources and dataset versions, from the checkpoint it started from (if
    it was resumed). Organisers only; one at a time per submission."""
    require_organiser(user, competition)
    submission = submissions.find(competition, submission_id)
    record = submission.provenance
    if submission.source != "session":
        raise ApiError(
            f"submission {submission.id} is a predictions file: only a model submission's "
            "training can run again",
            code="not_reproducible",
            status=422,
        )
    if not record:
        raise ApiError(
            f"submission {submission.id} has no record of its training to run again",
            code="not_reproducible",
            status=422,
        )
    running = db.session.scalar(
        select(Reproduction).where(
            Reproduction.submission_id == submission.id,
            Reproduction.status.in_(ACTIVE_REPRODUCTION),
        )
    )
    if running is not None:
        raise Conflict(
            f"reproduction {running.id} of submission {submission.id} is still {running.status}"
        )
    if not store.exists(record["code_digest"]):
        raise Conflict(f"the code of submission {submission.id} is no longer stored")
    start_from = _start_checkpoint(record, store)
    request = session_service.SessionRequest(
        entry=record["entry"],
        code_digest=record["code_digest"],
        code_bytes=int(record.get("code_bytes") or 0),
        args=record["args"],
        gpus=int(record["gpus"]),
        gpu_milli=int(record.get("gpu_milli") or 0),
        gpu_memory_mb=int(record.get("gpu_memory_mb") or 0),
        cpus=float(record["cpus"]),
        memory_mb=int(record["memory_mb"]),
        image=record["image"],
        environment=record["environment"],
        gpu_models=tuple(record["gpu_models"]),
        datasets=tuple(record["datasets"]),
        memo=f"reproduction of submission {submission.id} of {competition.slug} "
        f"({record['session']}), asked by {user.username}",
        kind=SessionKind.REPRODUCTION.value,
    )
    # One transaction with the reproduction: the scheduler sees the session whole (its
    # starting checkpoint too), and a refusal leaves nothing behind.
    try:
        session = session_service.create_session(submission.user, request, redis=None, commit=False)
    except NotFound as exc:
        # A dataset version gone, or no longer the submitter's to read.
        raise Conflict(f"submission {submission.id} cannot run again: {exc.message}") from None
    session.forked_from = record["session"]
    if start_from is not None:
        db.session.add(
            Checkpoint(
                session_id=session.id,
                name=start_from["name"],
                digest=start_from["digest"],
                size=int(start_from["size"]),
            )
        )
        session.resume_checkpoint = start_from["name"]
    reproduction = Reproduction(
        submission_id=submission.id,
        requested_by_id=user.id,
        training_session_id=session.id,
        status=ReproductionStatus.TRAINING.value,
    )
    db.session.add(reproduction)
    db.session.commit()
    if redis is not None:
        session_service.wake(redis)
    return reproduction


def _start_checkpoint(record: dict[str, Any], store: ArtifactStore) -> dict[str, Any] | None:
    """The checkpoint the original started from (it was resumed or forked from one)."""
    if not record.get("resumed_from"):
        return None
    start_from = record.get("start_checkpoint")
    if not start_from:
        raise Conflict(
            f"the submission's session started from checkpoint {record['resumed_from']}, "
            "which its record does not name by digest"
        )
    if not store.exists(start_from["digest"]):
        raise Conflict(
            f"checkpoint {start_from['name']}, which the submission's session started from, "
            "is no longer stored"
        )
    return start_from


def find(competition: Competition, reproduction_id: int) -> Reproduction:
    reproduction = db.session.get(Reproduction, reproduction_id)
    if reproduction is None or reproduction.round.competition_id != competition.id:
        raise NotFound(f"no reproduction {reproduction_id} in {competition.slug}")
    return reproduction


def shown(user: User, competition: Competition, reproduction_id: int) -> Reproduction:
    require_organiser(user, competition)
    return find(competition, reproduction_id)


def listed(
    user: User,
    competition: Competition,
    submission_id: int | None = None,
    limit: int | None = None,
) -> list[Reproduction]:
    """The competition's reproductions (a submission's, with `submission_id`), newest
    first, `limit` at most: for its organisers."""
    require_organiser(user, competition)
    query = (
        select(Reproduction)
        .join(Submission, Submission.id == Reproduction.submission_id)
        .join(Round, Round.id == Submission.round_id)
        .where(Round.competition_id == competition.id)
    )
    if submission_id is not None:
        query = query.where(
            Reproduction.submission_id == submissions.find(competition, submission_id).id
        )
    return list(db.session.scalars(query.order_by(Reproduction.id.desc()).limit(limit)))


def stop(
    user: User, competition: Competition, reproduction_id: int, redis: Redis | None
) -> Reproduction:
    """Stop a reproduction's running session; its end marks the reproduction failed."""
    reproduction = shown(user, competition, reproduction_id)
    ids = (reproduction.training_session_id, reproduction.grading_session_id)
    active = [
        s
        for s in (db.session.get(Session, i) for i in ids if i is not None)
        if s is not None and s.state.is_active
    ]
    if reproduction.status not in ACTIVE_REPRODUCTION or not active:
        raise Conflict(f"reproduction {reproduction.id} is {reproduction.status}: nothing to stop")
    for session in active:
        session_service.request_stop(session, redis, reason=f"stopped by {user.username}")
    db.session.refresh(reproduction)
    return reproduction


# The sessions' ends --------------------------------------------------------------------


def _by_session(column, session: Session) -> Reproduction | None:
    return db.session.scalar(select(Reproduction).where(column == session.id))


def for_grading_session(session: Session) -> Reproduction | None:
    return _by_session(Reproduction.grading_session_id, session)


def _fail(reproduction: Reproduction, error: str) -> None:
    reproduction.status = ReproductionStatus.FAILED.value
    reproduction.error = error
    reproduction.finished_at = utcnow()
    _tell(reproduction)
    db.session.commit()


def training_ended(session: Session) -> None:
    """The re-run has its final state: grade its checkpoint, or fail with the reason."""
    reproduction = _by_session(Reproduction.training_session_id, session)
    if reproduction is None or reproduction.status != ReproductionStatus.TRAINING.value:
        return
    if session.status != SessionStatus.COMPLETED.value:
        _fail(reproduction, f"the re-run {session.status}: {session.status_reason}".rstrip(": "))
        return
    checkpoint = _graded_checkpoint(session, reproduction.submission)
    if checkpoint is None:
        _fail(reproduction, "the re-run completed without saving a checkpoint")
        return
    competition = reproduction.round.competition
    try:
        grader = submissions.open_grading(
            session.user,
            session,
            checkpoint,
            reproduction.round,
            memo=f"grading {session.ident}:{checkpoint.name}, the reproduction of submission "
            f"{reproduction.submission_id} of {competition.slug}",
        )
    except ApiError as exc:  # no node could ever grade it now, say
        db.session.rollback()
        _fail(reproduction, f"its checkpoint could not be graded: {exc.message}")
        return
    reproduction.grading_session_id = grader.id
    reproduction.checkpoint = checkpoint.name
    reproduction.checkpoint_digest = checkpoint.digest
    reproduction.status = ReproductionStatus.GRADING.value
    db.session.commit()
    redis = grading._app_redis()
    if redis is not None:
        session_service.wake(redis)


def _graded_checkpoint(session: Session, submission: Submission) -> Checkpoint | None:
    """The re-run's checkpoint of the original's name, else the last it saved (not the
    one it started from)."""
    saved = [
        c
        for c in db.session.scalars(
            select(Checkpoint)
            .where(Checkpoint.session_id == session.id)
            .order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
        )
        if c.name != session.resume_checkpoint or c.digest != _start_digest(submission)
    ]
    wanted = ((submission.provenance or {}).get("checkpoint") or {}).get("name")
    return next((c for c in saved if c.name == wanted), saved[0] if saved else None)


def _start_digest(submission: Submission) -> str | None:
    start_from = (submission.provenance or {}).get("start_checkpoint") or {}
    return start_from.get("digest")


def grading_predictions(
    session: Session, data: bytes, store: ArtifactStore, redis: Redis | None
) -> Reproduction:
    """The reproduction's grading session wrote its predictions: checked, then queued for
    the grader, or the reproduction fails with the first problem."""
    reproduction = for_grading_session(session)
    if reproduction is None or reproduction.status != ReproductionStatus.GRADING.value:
        raise Conflict("this session grades no reproduction that waits for predictions")
    try:
        grading.validate_predictions(reproduction.round, data, store)
    except tables.TableError as exc:
        _fail(reproduction, f"the re-run's predictions are invalid: {exc.message}")
        return reproduction
    reproduction.predictions_digest, _ = store.put(
        io.BytesIO(data), max_bytes=grading.MAX_PREDICTIONS_BYTES
    )
    reproduction.status = ReproductionStatus.SCORING.value
    reproduction.finished_at = utcnow()  # when it was queued: the grader's sweep reads it
    db.session.commit()
    enqueue_scoring(redis, reproduction)
    return reproduction


def enqueue_scoring(redis: Redis | None, reproduction: Reproduction) -> None:
    if redis is None:
        return
    try:
        grader_queue(redis).enqueue(
            "grader.jobs.score_reproduction", reproduction.id, job_timeout=600
        )
    except RedisError:
        # The grader's sweep queues every reproduction left `scoring`.
        log.exception("could not queue the scoring of reproduction %s", reproduction.id)


def grading_ended(session: Session) -> None:
    reproduction = for_grading_session(session)
    if reproduction is None or reproduction.status != ReproductionStatus.GRADING.value:
        return
    if session.status == SessionStatus.COMPLETED.value:
        _fail(reproduction, "the grading run wrote no predictions")
    else:
        _fail(
            reproduction,
            f"the grading run {session.status}: {session.status_reason}".rstrip(": "),
        )


def scored(
    reproduction: Reproduction, public: float | None, private: float | None, error: str
) -> None:
    """The grader's outcome (`grader.jobs.score_reproduction`): kept once, whichever of
    two jobs (a sweep's and the first) gets here first."""
    claimed = db.session.execute(
        update(Reproduction)
        .where(
            Reproduction.id == reproduction.id,
            Reproduction.status == ReproductionStatus.SCORING.value,
        )
        .values(
            status=ReproductionStatus.FAILED.value if error else ReproductionStatus.SCORED.value
        )
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult, claimed).rowcount != 1:
        db.session.rollback()
        return
    if error:
        _fail(reproduction, f"scoring failed: {error}")
        return
    reproduction.status = ReproductionStatus.SCORED.value
    reproduction.public_score, reproduction.private_score = public, private
    reproduction.scored_revision = reproduction.round.revision
    reproduction.finished_at = utcnow()
    _tell(reproduction)
    db.session.commit()


def _tell(reproduction: Reproduction) -> None:
    """Tell the organiser who asked for it how it ended."""
    if reproduction.requested_by is None:
        return
    shown = reproduction_dict(reproduction)
    submission = reproduction.submission
    if reproduction.status == ReproductionStatus.SCORED.value:
        subject = (
            f"Submission {submission.id} reproduced: {_score(shown['reproduced']['public_score'])} "
            f"against {_score(shown['original']['public_score'])}"
        )
        body = (
            f"The re-run of team {submission.team.name}'s training scored "
            f"{_score(shown['reproduced']['public_score'])} public and "
            f"{_score(shown['reproduced']['private_score'])} private; the submission scored "
            f"{_score(shown['original']['public_score'])} and "
            f"{_score(shown['original']['private_score'])}."
        )
    else:
        subject = f"Submission {submission.id} could not be reproduced"
        body = reproduction.error
    competition = reproduction.round.competition
    alerts.notify(
        reproduction.requested_by,
        "reproduction",
        subject,
        body,
        link=f"/competitions/{competition.slug}/organise#reproductions",
    )


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.5f}"


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


LOG_TAIL = 40  # lines of the re-run's output an organiser reads with a reproduction


def log_tail(reproduction: Reproduction) -> list[str]:
    """The last lines the re-run printed: what an organiser reads of it (the session
    itself is the team's)."""
    if reproduction.training_session_id is None:
        return []
    lines = db.session.scalars(
        select(LogLine.text)
        .where(LogLine.session_id == reproduction.training_session_id)
        .order_by(LogLine.seq.desc())
        .limit(LOG_TAIL)
    ).all()
    return list(reversed(lines))


def reproduction_dict(reproduction: Reproduction, *, with_log: bool = False) -> dict[str, Any]:
    submission = reproduction.submission
    record = submission.provenance or {}
    training = (
        db.session.get(Session, reproduction.training_session_id)
        if reproduction.training_session_id
        else None
    )
    grader = (
        db.session.get(Session, reproduction.grading_session_id)
        if reproduction.grading_session_id
        else None
    )
    original = {
        "public_score": submission.public_score,
        "private_score": submission.private_score,
        "status": submission.status,
        "session": submission.session_ref or None,
        "checkpoint_digest": (record.get("checkpoint") or {}).get("digest"),
    }
    reproduced = {
        "public_score": reproduction.public_score,
        "private_score": reproduction.private_score,
        "checkpoint": reproduction.checkpoint or None,
        "checkpoint_digest": reproduction.checkpoint_digest or None,
    }
    return {
        "id": reproduction.id,
        "submission": submission.id,
        "round": submission.round.number,
        "team": submission.team.name,
        "status": reproduction.status,
        "error": reproduction.error or None,
        "requested_by": reproduction.requested_by.username if reproduction.requested_by else None,
        "training_session": training.ident if training is not None else None,
        "training_status": training.status if training is not None else None,
        "grading_session": grader.ident if grader is not None else None,
        "original": original,
        "reproduced": reproduced,
        "difference": {
            "public_score": _difference(reproduction.public_score, submission.public_score),
            "private_score": _difference(reproduction.private_score, submission.private_score),
        },
        # The same bytes: the training is deterministic, down to the checkpoint.
        "same_checkpoint": bool(
            reproduction.checkpoint_digest
            and reproduction.checkpoint_digest == original["checkpoint_digest"]
        ),
        # Scored against labels or a metric the round has since replaced.
        "stale": reproduction.scored_revision is not None
        and reproduction.scored_revision != submission.round.revision,
        "created_at": isoformat(reproduction.created_at),
        "finished_at": isoformat(reproduction.finished_at)
        if reproduction.status not in ACTIVE_REPRODUCTION
        else None,
        "log_tail": log_tail(reproduction) if with_log else None,
    }
