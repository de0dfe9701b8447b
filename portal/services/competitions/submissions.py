"""Submissions: a predictions file, or a session's checkpoint graded in a sandbox; the
quotas they count against, the final selections, and what a team sees of them.

A file is checked before it is accepted: one that fails (not a CSV, wrong columns,
missing or repeated ids, missing values, wrong row count) is refused with the first
problem and does not count against the quotas. An accepted submission counts however
it scores. A checkpoint is handed to a grading session (no network, time and memory
limits) whose predictions are checked the same way when it ends
(`portal/services/competitions/grading.py`).
"""

from __future__ import annotations

import io
import logging
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select

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
from portal.services import sessions as session_service
from portal.services.artifacts import ArtifactStore
from portal.services.competitions import boards
from portal.services.competitions.core import (
    RoundState,
    find_round,
    is_organiser,
    may_submit,
    membership,
    require_organiser,
    round_state,
)
from portal.services.competitions.entrants import find_team, team_of
from portal.services.competitions.grading import (
    MAX_PREDICTIONS_BYTES,
    enqueue_scoring,
    over_its_share,
    team_changed,
    validate_predictions,
)
from portal.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)


def qualified(round_: Round, redis: Redis | None) -> set[int] | None:
    """Team ids allowed into `round_`: the previous round's top `advance_top` by private
    score; None when every team may enter (first round, or no cut)."""
    previous = next((r for r in round_.competition.rounds if r.number == round_.number - 1), None)
    if previous is None or previous.advance_top is None:
        return None
    ranking = boards.private_board(redis, previous)
    return {row["team_id"] for row in ranking[: previous.advance_top]}


def quota(team: CompetitionTeam | None, round_: Round) -> dict[str, Any]:
    """What a team has used of a round's quotas, and what is left: today's (UTC days)
    and the round's. A user without a team has used nothing."""
    midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    total = today = 0
    if team is not None:
        counted = (
            select(func.count(Submission.id))
            .where(Submission.round_id == round_.id, Submission.team_id == team.id)
            .where(Submission.status.in_(COUNTED_STATUSES))
        )
        total = db.session.scalar(counted) or 0
        today = db.session.scalar(counted.where(Submission.created_at >= midnight)) or 0
    return {
        "round": round_.number,
        "used_today": today,
        "left_today": max(0, min(round_.daily_quota - today, round_.total_quota - total)),
        "used": total,
        "left": max(0, round_.total_quota - total),
        "daily_quota": round_.daily_quota,
        "total_quota": round_.total_quota,
        "resets_at": isoformat(midnight + timedelta(days=1)),
    }


def _check_quota(team: CompetitionTeam, round_: Round) -> None:
    # Serialise submissions of one team (PostgreSQL row lock; SQLite has one writer).
    db.session.execute(
        select(CompetitionTeam.id).where(CompetitionTeam.id == team.id).with_for_update()
    )
    used = quota(team, round_)
    if used["left"] == 0:
        raise ApiError(
            f"team {team.name} has used all {round_.total_quota} submissions of round "
            f"{round_.number}",
            code="quota_exceeded",
            status=429,
        )
    if used["used_today"] >= round_.daily_quota:
        raise ApiError(
            f"team {team.name} has used its {round_.daily_quota} submissions of today "
            f"(UTC); more from {used['resets_at']}",
            code="quota_exceeded",
            status=429,
        )


def _check_entry(
    user: User,
    competition: Competition,
    round_number: int | None,
    redis: Redis | None,
    kind: str,
) -> tuple[CompetitionTeam | None, Round]:
    """The user's team (None if they have none yet) and the round, once the rules allow
    a submission of this kind ("files" or "models"). Changes nothing: a refused
    submission leaves no team behind."""
    round_ = find_round(competition, round_number)
    if round_.accepts not in (kind, "both"):
        other = "a session's checkpoint" if kind == "files" else "a predictions file"
        raise ApiError(
            f"round {round_.number} takes {round_.accepts} only: submit {other}",
            code="wrong_submission_kind",
            status=422,
        )
    mine = membership(user, competition)
    team = mine.team if mine is not None else None
    may_submit(team, round_, qualified(round_, redis))
    if team is not None:
        _check_quota(team, round_)
    return team, round_


def _counted(redis: Redis | None, submission: Submission) -> None:
    if redis is None:
        return
    team_changed(redis, submission.team_id)
    try:
        board = boards.board(redis, submission.round)
        board.count(submission.team_id, submission.team.name, submission.created_at)
        board.changed()
    except RedisError:
        log.exception("leaderboard cache not updated for submission %s", submission.id)


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
    team, round_ = _check_entry(user, competition, round_number, redis, "files")
    validate_predictions(round_, data, store)
    team = team or team_of(user, competition, create=True)
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
    enqueue_scoring(redis, submission)
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
    if source.kind == SessionKind.GRADING.value:
        raise ApiError(
            f"{source.ident} is a grading session: submit the training session it graded "
            f"({source.forked_from})",
            code="grading_session",
        )
    if source.kind != SessionKind.TRAINING.value:
        raise ApiError(
            f"{source.ident} is an organiser's reproduction: submit your own training session",
            code="grading_session",
        )
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
    team, round_ = _check_entry(user, competition, round_number, redis, "models")
    team = team or team_of(user, competition, create=True)
    grading = open_grading(
        user,
        source,
        checkpoint,
        round_,
        memo=f"grading {source.ident}:{checkpoint.name} for {competition.slug} round "
        f"{round_.number}",
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
        provenance=provenance(source, checkpoint, grading),
    )
    db.session.add(submission)
    db.session.commit()
    _counted(redis, submission)
    if redis is not None:
        session_service.wake(redis)
    return submission


def open_grading(
    owner: User,
    source: Session,
    checkpoint: Checkpoint,
    round_: Round,
    *,
    memo: str,
    whole_gpu: bool = False,
) -> Session:
    """A grading session of `owner` that restores `checkpoint` of `source` (same code and
    environment) and predicts the round's hidden inputs, within the round's limits:
    on a share of one GPU where the training had one or a share of one
    (`GRADING_GPU_SHARE`; `whole_gpu`: a whole one), as many whole GPUs as it had
    where it had several (a model trained across GPUs may need them all). Not
    committed."""
    share = round(float(current_app.config["GRADING_GPU_SHARE"]) * 1000)
    on_one_gpu = source.gpus == 1 or source.shares_gpu
    if whole_gpu:
        gpus, milli, gpu_memory = max(1, source.gpus), 0, 0
    elif 0 < share < 1000 and on_one_gpu:
        gpus, milli, gpu_memory = 0, share, 0
    else:
        gpus, milli, gpu_memory = source.gpus, source.gpu_milli, source.gpu_memory_mb
    request = session_service.SessionRequest(
        entry=source.entry,
        code_digest=source.code_digest,
        code_bytes=source.code_bytes,
        args=source.args,
        gpus=gpus,
        gpu_milli=milli,
        gpu_memory_mb=gpu_memory,
        cpus=1.0,
        memory_mb=round_.memory_mb,
        image=source.image,
        environment=source.environment,
        gpu_models=tuple(sorted(source.gpu_model_set)),
        memo=memo,
        kind=SessionKind.GRADING.value,
    )
    grading = session_service.create_session(owner, request, redis=None, commit=False)
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
    return grading


def grade_again(submission: Submission, failed: Session, why: str) -> Session:
    """Grade a model submission in a new grading session, the same checkpoint, after
    the platform failed the last one (`grading.grading_ended`). Commits."""
    checkpoint = db.session.scalar(
        select(Checkpoint).where(
            Checkpoint.session_id == failed.id, Checkpoint.name == failed.resume_checkpoint
        )
    )
    if checkpoint is None:  # the failed session was removed meanwhile
        raise NotFound(f"the checkpoint of submission {submission.id} is gone")
    grading = open_grading(
        submission.user,
        failed,
        checkpoint,
        submission.round,
        memo=f"{failed.memo} (again: {why})"[:2000],
        whole_gpu=over_its_share(failed),
    )
    grading.forked_from = failed.forked_from
    submission.grading_session_id = grading.id
    submission.grading_attempts += 1
    submission.error = f"graded again ({why})"
    if submission.provenance is not None:
        submission.provenance = {**submission.provenance, "grading_session": grading.ident}
    db.session.commit()
    log.warning("submission %s is graded again in %s: %s", submission.id, grading.ident, why)
    return grading


def find(competition: Competition, submission_id: int) -> Submission:
    submission = db.session.get(Submission, submission_id)
    if submission is None or submission.round.competition_id != competition.id:
        raise NotFound(f"no submission {submission_id} in {competition.slug}")
    return submission


def visible(user: User, competition: Competition, submission: Submission) -> Submission:
    if is_organiser(user, competition):
        return submission
    mine = membership(user, competition)
    if mine is None or mine.team_id != submission.team_id:
        raise NotFound(f"no submission {submission.id} of your team")
    return submission


def select_final(
    user: User, competition: Competition, submission_id: int, selected: bool, redis: Redis | None
) -> Submission:
    """Select (or unselect) one of the user's team's scored submissions for the final,
    private ranking, while its round is open; the board is marked changed."""
    submission = find(competition, submission_id)
    mine = membership(user, competition)
    if mine is None or mine.team_id != submission.team_id:
        raise NotFound(f"no submission {submission_id} of your team")
    round_ = submission.round
    if round_state(round_) == RoundState.ENDED:
        raise Conflict(f"round {round_.number} has ended: final selections are closed")
    if selected and submission.disqualified_reason:
        raise Conflict(
            f"submission {submission.id} is disqualified ({submission.disqualified_reason}): "
            "it cannot be selected"
        )
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
    _board_changed(redis, submission)
    team_changed(redis, submission.team_id)
    return submission


def _board_changed(redis: Redis | None, submission: Submission) -> None:
    if redis is None:
        return
    try:
        boards.board(redis, submission.round).changed()
    except RedisError:
        log.exception("leaderboard cache not marked changed for submission %s", submission.id)


def listed(
    user: User, competition: Competition, team_name: str | None, round_number: int | None
) -> list[Submission]:
    """A team's submissions (the round's, with `round_number`): the user's own team's,
    or, for organisers, any team's."""
    round_ = find_round(competition, round_number) if round_number else None
    if team_name:
        team = find_team(competition, team_name)
        mine = membership(user, competition)
        if not is_organiser(user, competition) and (mine is None or mine.team_id != team.id):
            raise NotFound(f"no team {team_name!r} of yours")
    else:
        team = team_of(user, competition)
    return team_submissions(team, round_)


def shown(user: User, competition: Competition, submission_id: int) -> Submission:
    """One submission, to its team or the competition's organisers."""
    return visible(user, competition, find(competition, submission_id))


def search(
    user: User,
    competition: Competition,
    *,
    team_name: str | None = None,
    status: str | None = None,
    round_number: int | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Submission], int]:
    """Every team's submissions, for the competition's organisers: filtered by team, state
    ("disqualified" included) and round, newest first, one page and the total."""
    require_organiser(user, competition)
    query = (
        select(Submission)
        .join(Round, Submission.round_id == Round.id)
        .where(Round.competition_id == competition.id)
    )
    if team_name:
        query = query.where(Submission.team_id == find_team(competition, team_name).id)
    if round_number:
        query = query.where(Submission.round_id == find_round(competition, round_number).id)
    if status == "disqualified":
        query = query.where(Submission.disqualified_reason != "")
    elif status:
        query = query.where(Submission.status == status, Submission.disqualified_reason == "")
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = db.session.scalars(query.order_by(Submission.id.desc()).offset(offset).limit(limit))
    return list(page), total


def recent(user: User, limit: int = 5) -> list[Submission]:
    """The user's latest submissions, in any competition."""
    return list(
        db.session.scalars(
            select(Submission)
            .where(Submission.user_id == user.id)
            .order_by(Submission.id.desc())
            .limit(limit)
        )
    )


def team_submissions(team: CompetitionTeam, round_: Round | None = None) -> list[Submission]:
    query = select(Submission).where(Submission.team_id == team.id)
    if round_ is not None:
        query = query.where(Submission.round_id == round_.id)
    return list(db.session.scalars(query.order_by(Submission.id.desc())))


def provenance(source: Session, checkpoint: Checkpoint, grading: Session) -> dict[str, Any]:
    """What a model submission came from, as it was when submitted: enough to run its
    training again and grade it the same way."""
    return {
        "session": source.ident,
        "entry": source.entry,
        "args": source.args,
        "code_digest": source.code_digest,
        "environment": source.environment,
        "image": source.image,
        "gpus": source.gpus,
        "gpu_milli": source.gpu_milli,
        "gpu_memory_mb": source.gpu_memory_mb,
        "cpus": source.cpus,
        "memory_mb": source.memory_mb,
        "gpu_models": sorted(source.gpu_model_set),
        "datasets": session_service.dataset_refs(source),
        "code_bytes": source.code_bytes,
        "resumed_from": source.resume_checkpoint or None,
        "start_checkpoint": _checkpoint_record(
            db.session.scalar(
                select(Checkpoint).where(
                    Checkpoint.session_id == source.id,
                    Checkpoint.name == source.resume_checkpoint,
                )
            )
            if source.resume_checkpoint
            else None
        ),
        "forked_from": source.forked_from or None,
        "checkpoint": _checkpoint_record(checkpoint),
        "grading_session": grading.ident,
    }


def _checkpoint_record(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {
        "name": checkpoint.name,
        "digest": checkpoint.digest,
        "size": checkpoint.size,
        "saved_at": isoformat(checkpoint.created_at),
    }


def submission_dict(submission: Submission, *, private: bool = False) -> dict[str, Any]:
    round_ = submission.round
    show_private = private or round_state(round_) == RoundState.ENDED
    grading = (
        db.session.get(Session, submission.grading_session_id)
        if submission.grading_session_id
        else None
    )
    return {
        "id": submission.id,
        "round": round_.number,
        "team": submission.team.name,
        "user": submission.user.username,
        "source": submission.source,
        "session": submission.session_ref or None,
        "grading_session": grading.ident if grading is not None else None,
        # Disqualified reads so everywhere, whatever its grading came to.
        "status": "disqualified" if submission.disqualified_reason else submission.status,
        "grading_attempts": submission.grading_attempts if submission.source == "session" else None,
        "error": submission.error or None,
        "public_score": submission.public_score,
        "private_score": submission.private_score if show_private else None,
        "selected": submission.selected,
        "disqualified_reason": submission.disqualified_reason or None,
        "memo": submission.memo,
        "provenance": submission.provenance,
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
