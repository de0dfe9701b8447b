"""What sessions use and what it costs: resource summaries per session, the cluster's
state over time, and the credit ledger."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.timeutil import utcnow


class SessionUsage(db.Model):  # type: ignore[name-defined]
    """A session's resource use in totals, kept as its node's samples arrive (the
    samples themselves are series under `monitoring.PREFIX`): what its average GPU
    utilisation and peaks are read from."""

    __tablename__ = "session_usage"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    samples: Mapped[int] = mapped_column(default=0)
    # Samples with GPU readings (none where the GPUs are simulated), and the sum of
    # their utilisation averaged over the session's GPUs.
    gpu_samples: Mapped[int] = mapped_column(default=0)
    gpu_utilization_sum: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_memory_peak_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu_percent_sum: Mapped[float] = mapped_column(Float, default=0.0)
    memory_peak_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    # The last sample's time in seconds since the session started: samples only move on,
    # so a batch sent again is not counted twice.
    last_second: Mapped[int] = mapped_column(BigInteger, default=-1)
    last_sample_at: Mapped[datetime | None]

    @property
    def gpu_utilization(self) -> float | None:
        return self.gpu_utilization_sum / self.gpu_samples if self.gpu_samples else None


class UserUsage(db.Model):  # type: ignore[name-defined]
    """A user's recent GPU use: the average GPU utilisation of each of their last 100
    sessions that reported one, oldest first, appended as each ends (NSML's front-page
    figure reads one row a user, not a window over every session)."""

    __tablename__ = "user_usage"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    recent: Mapped[list] = mapped_column(JSON, default=list)


class ClusterSample(db.Model):  # type: ignore[name-defined]
    """The cluster's state at one moment (the scheduler records one a minute)."""

    __tablename__ = "cluster_samples"

    # Seconds since the epoch (UTC): the dashboard groups them into buckets in SQL, by
    # integer division, the same on SQLite and PostgreSQL.
    at: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    gpus: Mapped[int] = mapped_column(default=0)
    gpus_allocated: Mapped[int] = mapped_column(default=0)
    # Allocated GPUs that reported a utilisation, and those of them at 80% or more.
    gpus_reporting: Mapped[int] = mapped_column(default=0)
    gpus_busy: Mapped[int] = mapped_column(default=0)
    nodes_ready: Mapped[int] = mapped_column(default=0)
    nodes_drained: Mapped[int] = mapped_column(default=0)
    nodes_lost: Mapped[int] = mapped_column(default=0)


class EntryKind(enum.StrEnum):
    GRANT = "grant"
    CHARGE = "charge"
    REFUND = "refund"


class CreditEntry(db.Model):  # type: ignore[name-defined]
    """One line of a user's credit ledger. A running session's charges of one hour go
    on one line, extended as intervals are charged (`period_end`)."""

    __tablename__ = "credit_entries"
    __table_args__ = (
        Index("ix_credit_entries_user", "user_id", "id"),
        Index("ix_credit_entries_session", "session_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    # Signed: a grant or refund adds, a charge takes away.
    amount: Mapped[float] = mapped_column(Float)
    gpu_hours: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_hours: Mapped[float] = mapped_column(Float, default=0.0)
    balance_after: Mapped[float] = mapped_column(Float)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"))
    # Kept when the session is removed: the ledger still says what was paid for.
    session_ident: Mapped[str] = mapped_column(String(160), default="")
    competition_id: Mapped[int | None] = mapped_column(
        ForeignKey("competitions.id", ondelete="SET NULL")
    )
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]


class Notification(db.Model):  # type: ignore[name-defined]
    """Something a user is told: in the portal, and by e-mail when they want it and the
    site sends mail. The table is also the mail's outbox (`email_state`)."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user", "user_id", "id"),
        Index("ix_notifications_email", "email_state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]
    # "": no e-mail; pending; sending (claimed by a sender, since `emailed_at`); sent;
    # failed (refused by the mail server at every attempt).
    email_state: Mapped[str] = mapped_column(String(16), default="")
    email_attempts: Mapped[int] = mapped_column(default=0)
    email_error: Mapped[str] = mapped_column(Text, default="")
    emailed_at: Mapped[datetime | None]
