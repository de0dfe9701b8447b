"""Hyperparameter searches (`podium automl`): a search and its trials, each trial an
ordinary session. The search's whole state lives here, so a driver that restarts (the
scheduler's housekeeping, `portal/services/searches.py`) picks up where it was."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.session import Session
from portal.models.user import User
from portal.timeutil import utcnow


class SearchStatus(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"  # its budget is spent (or its grid), and its sessions ended
    STOPPED = "stopped"  # its owner (or an admin) stopped it
    FAILED = "failed"  # it could not go on (its code is gone, every trial failed)


class TrialState(enum.StrEnum):
    RUNNING = "running"  # its session is pending or running
    DONE = "done"  # its session ended and reported the metric
    PRUNED = "pruned"  # ASHA: stopped at a rung, not in the top 1/eta there
    FAILED = "failed"  # its session failed, or ended without reporting the metric
    STOPPED = "stopped"  # stopped with its search


class Search(db.Model):  # type: ignore[name-defined]
    __tablename__ = "searches"
    __table_args__ = (UniqueConstraint("user_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    number: Mapped[int]  # USER/search/NUMBER
    algorithm: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(128))
    direction: Mapped[str] = mapped_column(String(8))  # max | min
    # The validated spec: the space, fixed arguments, budget, parallelism, options.
    spec: Mapped[dict] = mapped_column(JSON)
    # What every trial's session is made of: entry, resources, datasets, environment.
    template: Mapped[dict] = mapped_column(JSON)
    code_digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=SearchStatus.RUNNING.value)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    memo: Mapped[str] = mapped_column(Text, default="")
    # The best trial so far (its number within the search) and its metric.
    best_trial: Mapped[int | None]
    best_value: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()
    trials: Mapped[list[SearchTrial]] = relationship(
        back_populates="search",
        order_by="SearchTrial.number",
        foreign_keys="SearchTrial.search_id",
        cascade="all, delete-orphan",
    )

    @property
    def ident(self) -> str:
        return f"{self.user.username}/search/{self.number}"


class SearchTrial(db.Model):  # type: ignore[name-defined]
    __tablename__ = "search_trials"
    __table_args__ = (
        UniqueConstraint("search_id", "number"),
        Index("ix_search_trials_session", "session_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    number: Mapped[int]  # 1, 2, ... within the search
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"))
    params: Mapped[dict] = mapped_column(JSON)  # the hyperparameters it runs with
    state: Mapped[str] = mapped_column(String(16), default=TrialState.RUNNING.value)
    value: Mapped[float | None] = mapped_column(Float)  # the metric, last reported
    step: Mapped[int | None]  # the step of `value`
    # ASHA and PBT: the step its segment trains up to (-1: to the script's own end).
    rung: Mapped[int] = mapped_column(default=-1)
    # PBT: the population slot it fills (ASHA: the configuration), and the trial whose
    # checkpoint it started from (the member's own last segment, or a better member's;
    # None for a first segment).
    member: Mapped[int] = mapped_column(default=0)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("search_trials.id", ondelete="SET NULL")
    )
    checkpoint: Mapped[str] = mapped_column(String(128), default="")  # it started from
    note: Mapped[str] = mapped_column(Text, default="")  # why it ended as it did
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]

    search: Mapped[Search] = relationship(back_populates="trials", foreign_keys=[search_id])
    session: Mapped[Session | None] = relationship()
