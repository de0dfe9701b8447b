"""The grader's RQ jobs. They take ids, never payloads: the database says what to do.

`score_submission(id)` scores one submission's predictions and offers the public score
to the leaderboard cache; `score_reproduction(id)` scores an organiser's re-run of one
(no board hears of it); `rescore_round(id)` scores every submission of a round again
(after its labels or metric changed) and rebuilds the cache; `sweep()` queues what a
lost job left behind.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask
from redis import Redis
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from grader import scoring
from portal import create_app
from portal.extensions import db
from portal.models import Reproduction, ReproductionStatus, Round, Submission, SubmissionStatus
from portal.queue import grader_queue
from portal.services.artifacts import ArtifactStore
from portal.services.competitions import announcements, boards, grading, reproductions
from portal.timeutil import utcnow

log = logging.getLogger(__name__)

_app: Flask | None = None


def app() -> Flask:
    """One app per worker process, made on first use (jobs run in the worker itself)."""
    global _app
    if _app is None:
        _app = create_app(serve=False, migrations=False)
    return _app


def _redis() -> Redis:
    return Redis.from_url(app().config["REDIS_URL"])


def _store() -> ArtifactStore:
    return ArtifactStore(app().config["ARTIFACT_ROOT"])


def score_one(submission: Submission, store: ArtifactStore) -> bool:
    """Score it and commit; True when it was scored (not failed)."""
    round_ = submission.round
    data = store.path(submission.predictions_digest).read_bytes()
    try:
        public, private = scoring.score(round_, store, data)
    except scoring.ScoringError as exc:
        submission.status = SubmissionStatus.FAILED.value
        submission.error = str(exc)
        submission.public_score = submission.private_score = None
    else:
        submission.status = SubmissionStatus.SCORED.value
        submission.error = ""
        submission.public_score, submission.private_score = public, private
    if submission.scored_revision is None:
        # Its team is told of its first outcome (a rescore after new labels or a new
        # metric tells nobody again: the board shows it).
        announcements.submission_outcome(submission)
    submission.scored_revision = round_.revision
    submission.scored_at = utcnow()
    db.session.commit()
    return submission.status == SubmissionStatus.SCORED.value


def score_submission(submission_id: int) -> str:
    with app().app_context():
        return process(submission_id, _redis(), _store())


def process(submission_id: int, redis: Redis, store: ArtifactStore) -> str:
    """Score one submission (in the current app context) and update its board."""
    # Locked (PostgreSQL): a job queued again by the sweep while the first still runs
    # waits for it, then finds the submission scored; it is graded once.
    submission = db.session.get(
        Submission,
        submission_id,
        options=[joinedload(Submission.round), joinedload(Submission.team)],
        with_for_update={"of": Submission},
    )
    if submission is None:
        return "gone"
    if submission.status != SubmissionStatus.SCORING.value:
        return submission.status  # scored already (a repeated job)
    scored = score_one(submission, store)
    board = boards.board(redis, submission.round)
    if scored and not submission.disqualified_reason and not submission.team.disqualified_reason:
        board.offer(
            submission.team_id,
            submission.id,
            float(submission.public_score or 0.0),
            submission.created_at,
        )
    board.changed()
    grading.team_changed(redis, submission.team_id)
    log.info("submission %s: %s %s", submission.id, submission.status, submission.public_score)
    return submission.status


def score_reproduction(reproduction_id: int) -> str:
    with app().app_context():
        return process_reproduction(reproduction_id, _store())


def process_reproduction(reproduction_id: int, store: ArtifactStore) -> str:
    """Score a reproduction's predictions against its round, as its submission's were;
    no board hears of it."""
    reproduction = db.session.get(Reproduction, reproduction_id)
    if reproduction is None:
        return "gone"
    if reproduction.status != ReproductionStatus.SCORING.value:
        return reproduction.status  # a repeated job
    data = store.path(reproduction.predictions_digest).read_bytes()
    try:
        public, private = scoring.score(reproduction.round, store, data)
    except scoring.ScoringError as exc:
        reproductions.scored(reproduction, None, None, str(exc))
    else:
        reproductions.scored(reproduction, public, private, "")
    log.info(
        "reproduction %s: %s %s", reproduction.id, reproduction.status, reproduction.public_score
    )
    return reproduction.status


def rescore_round(round_id: int) -> int:
    with app().app_context():
        return rescore(round_id, _redis(), _store())


def rescore(round_id: int, redis: Redis, store: ArtifactStore) -> int:
    round_ = db.session.get(Round, round_id)
    if round_ is None:
        return 0
    ids = list(
        db.session.scalars(
            select(Submission.id).where(
                Submission.round_id == round_id,
                Submission.status == SubmissionStatus.SCORING.value,
                Submission.predictions_digest != "",
            )
        )
    )
    for submission_id in ids:
        submission = db.session.get(Submission, submission_id)
        if submission is not None and submission.status == SubmissionStatus.SCORING.value:
            score_one(submission, store)
    boards.board(redis, round_).invalidate()
    log.info("round %s: %d submissions scored again", round_id, len(ids))
    return len(ids)


def sweep(older_than: timedelta = timedelta(seconds=30)) -> int:
    """Queue again the submissions left `scoring` (a job lost with Redis, say)."""
    with app().app_context():
        cutoff = utcnow() - older_than
        ids = list(
            db.session.scalars(
                select(Submission.id).where(
                    Submission.status == SubmissionStatus.SCORING.value,
                    Submission.created_at < cutoff,
                    (Submission.scored_at.is_(None)) | (Submission.scored_at < cutoff),
                )
            )
        )
        # A reproduction's `finished_at` is when it was queued, while it is scoring.
        reproduction_ids = list(
            db.session.scalars(
                select(Reproduction.id).where(
                    Reproduction.status == ReproductionStatus.SCORING.value,
                    Reproduction.finished_at < cutoff,
                )
            )
        )
        if not ids and not reproduction_ids:
            return 0
        # Touch them, so the next sweep waits for these jobs before queueing them again.
        db.session.execute(
            update(Submission).where(Submission.id.in_(ids)).values(scored_at=utcnow())
        )
        db.session.execute(
            update(Reproduction)
            .where(Reproduction.id.in_(reproduction_ids))
            .values(finished_at=utcnow())
        )
        db.session.commit()
        queue = grader_queue(_redis())
        for submission_id in ids:
            queue.enqueue("grader.jobs.score_submission", submission_id, job_timeout=600)
        for reproduction_id in reproduction_ids:
            queue.enqueue("grader.jobs.score_reproduction", reproduction_id, job_timeout=600)
        return len(ids) + len(reproduction_ids)
