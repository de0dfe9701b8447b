"""Competitions: rounds, the teams that enter them, and their graded submissions.

Competition teams are not the collaboration teams of `portal.models.dataset.Team`: a
user is in at most one team per competition, formed inside it.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.user import User
from portal.timeutil import utcnow


class SubmissionStatus(enum.StrEnum):
    GRADING = "grading"  # a grading session is making its predictions
    SCORING = "scoring"  # predictions accepted, waiting for the grader
    SCORED = "scored"
    FAILED = "failed"  # the grading session or the scoring failed: counts against quotas
    INVALID = "invalid"  # predictions failed validation: does not count
    # Its grading failed for the platform's reasons (a node lost, a container that could
    # not start, ...) every time it was tried: does not count.
    ERRORED = "errored"


COUNTED_STATUSES = (
    SubmissionStatus.GRADING.value,
    SubmissionStatus.SCORING.value,
    SubmissionStatus.SCORED.value,
    SubmissionStatus.FAILED.value,
)


class Competition(db.Model):  # type: ignore[name-defined]
    __tablename__ = "competitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # public: listed, everyone sees it; unlisted: anyone with the link; private: a draft
    # its organisers alone see (see services.competitions.can_view).
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    team_size_limit: Mapped[int] = mapped_column(default=1)
    organiser_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    organiser: Mapped[User] = relationship()
    rounds: Mapped[list[Round]] = relationship(
        back_populates="competition", cascade="all, delete-orphan", order_by="Round.number"
    )


class Round(db.Model):  # type: ignore[name-defined]
    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("competition_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id", ondelete="CASCADE"))
    number: Mapped[int]
    name: Mapped[str] = mapped_column(String(200), default="")
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    dataset: Mapped[str] = mapped_column(String(140), default="")  # NAME:VERSION to train on
    # The hidden test inputs (a CSV with an `id` column), for grading sessions only.
    inputs_digest: Mapped[str] = mapped_column(String(64))
    # The test ids in input order, one per line: what predictions are checked against.
    ids_digest: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int]
    # The hidden labels, sealed to the grader's key: the portal stores them but cannot
    # read them.
    labels_digest: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(32))
    # accuracy_within's tolerance (degrees); None for other metrics.
    tolerance: Mapped[float | None] = mapped_column(Float)
    higher_is_better: Mapped[bool]
    scorer_digest: Mapped[str] = mapped_column(String(64), default="")  # custom metric
    daily_quota: Mapped[int] = mapped_column(default=5)
    total_quota: Mapped[int] = mapped_column(default=100)
    public_fraction: Mapped[float] = mapped_column(Float, default=0.5)
    split_salt: Mapped[str] = mapped_column(String(32))
    final_selections: Mapped[int] = mapped_column(default=2)
    advance_top: Mapped[int | None]
    # Limits of a grading session.
    time_limit_s: Mapped[int] = mapped_column(default=600)
    memory_mb: Mapped[int] = mapped_column(default=2048)
    # Whether anyone who may see the competition may download the test inputs (without
    # labels), as file submissions need; and what the round takes: "files", "models"
    # (a session's checkpoint, graded in a sandbox) or "both".
    publish_inputs: Mapped[bool] = mapped_column(default=False)
    accepts: Mapped[str] = mapped_column(String(8), default="both")
    # Whether its entrants were told it opened, and that it ended.
    opened_told: Mapped[bool] = mapped_column(default=False, server_default="0")
    ended_told: Mapped[bool] = mapped_column(default=False, server_default="0")
    # Bumped when labels or metric change: scores of an older revision are stale.
    revision: Mapped[int] = mapped_column(default=1)

    competition: Mapped[Competition] = relationship(back_populates="rounds")


class CompetitionTeam(db.Model):  # type: ignore[name-defined]
    __tablename__ = "competition_teams"
    __table_args__ = (UniqueConstraint("competition_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    competition_id: Mapped[int] = mapped_column(
        ForeignKey("competitions.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    invite_code: Mapped[str] = mapped_column(String(32), unique=True)
    disqualified_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    members: Mapped[list[CompetitionMember]] = relationship(
        back_populates="team", cascade="all, delete-orphan"
    )


class CompetitionMember(db.Model):  # type: ignore[name-defined]
    __tablename__ = "competition_members"
    # One team per user per competition.
    __table_args__ = (UniqueConstraint("competition_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id", ondelete="CASCADE"))
    team_id: Mapped[int] = mapped_column(
        ForeignKey("competition_teams.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)

    team: Mapped[CompetitionTeam] = relationship(back_populates="members")
    user: Mapped[User] = relationship()


class TeamInvite(db.Model):  # type: ignore[name-defined]
    __tablename__ = "team_invites"
    __table_args__ = (UniqueConstraint("team_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("competition_teams.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    team: Mapped[CompetitionTeam] = relationship()
    user: Mapped[User] = relationship()


class Submission(db.Model):  # type: ignore[name-defined]
    __tablename__ = "submissions"
    __table_args__ = (
        Index("ix_submissions_round_team_created", "round_id", "team_id", "created_at"),
        Index("ix_submissions_round_status", "round_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    team_id: Mapped[int] = mapped_column(ForeignKey("competition_teams.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))  # "file" or "session"
    session_ref: Mapped[str] = mapped_column(String(200), default="")  # USER/N:CHECKPOINT
    grading_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), index=True
    )
    predictions_digest: Mapped[str] = mapped_column(String(64), default="")
    # Grading sessions started for it: one more each time the platform failed one.
    grading_attempts: Mapped[int] = mapped_column(default=1, server_default="1")
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str] = mapped_column(Text, default="")
    public_score: Mapped[float | None] = mapped_column(Float)
    private_score: Mapped[float | None] = mapped_column(Float)
    scored_revision: Mapped[int | None]
    selected: Mapped[bool] = mapped_column(default=False)
    disqualified_reason: Mapped[str] = mapped_column(Text, default="")
    memo: Mapped[str] = mapped_column(Text, default="")
    # A model submission's record as it was submitted (`submissions.provenance`): the
    # session's code, arguments, environment and dataset versions, the checkpoint, the
    # grading session. Kept when the session is changed or removed.
    provenance: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    scored_at: Mapped[datetime | None]

    round: Mapped[Round] = relationship()
    team: Mapped[CompetitionTeam] = relationship()
    user: Mapped[User] = relationship()


class ReproductionStatus(enum.StrEnum):
    TRAINING = "training"  # the submission's training runs again
    GRADING = "grading"  # a grading session predicts with the re-run's checkpoint
    SCORING = "scoring"
    SCORED = "scored"
    FAILED = "failed"  # with the reason: the re-run, its grading or its scoring


ACTIVE_REPRODUCTION = (
    ReproductionStatus.TRAINING.value,
    ReproductionStatus.GRADING.value,
    ReproductionStatus.SCORING.value,
)


class Reproduction(db.Model):  # type: ignore[name-defined]
    """An organiser's re-run of a model submission's training from its record, graded
    against the same round: the original and reproduced scores side by side. It counts
    against no quota and reaches no leaderboard."""

    __tablename__ = "reproductions"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(
        ForeignKey("submissions.id", ondelete="CASCADE"), index=True
    )
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    training_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), index=True
    )
    grading_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=ReproductionStatus.TRAINING.value)
    error: Mapped[str] = mapped_column(Text, default="")
    # The re-run's checkpoint that was graded.
    checkpoint: Mapped[str] = mapped_column(String(200), default="")
    checkpoint_digest: Mapped[str] = mapped_column(String(64), default="")
    predictions_digest: Mapped[str] = mapped_column(String(64), default="")
    public_score: Mapped[float | None] = mapped_column(Float)
    private_score: Mapped[float | None] = mapped_column(Float)
    scored_revision: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    submission: Mapped[Submission] = relationship()
    requested_by: Mapped[User | None] = relationship()

    @property
    def round(self) -> Round:
        return self.submission.round
