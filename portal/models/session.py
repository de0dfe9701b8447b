from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.node import Node
from portal.models.user import User
from portal.timeutil import utcnow


class SessionStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for the scheduler to place it
    SCHEDULED = "scheduled"  # placed on a node, its start is queued there
    RUNNING = "running"
    COMPLETED = "completed"  # exit code 0
    FAILED = "failed"  # non-zero exit code, or it could not start
    KILLED = "killed"  # killed by the platform, e.g. out of memory
    STOPPED = "stopped"  # stopped by its owner or an admin
    REJECTED = "rejected"  # no registered node could ever hold it
    LOST = "lost"  # its node stopped answering

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES

    @property
    def is_final(self) -> bool:
        return self not in ACTIVE_STATUSES


ACTIVE_STATUSES = frozenset({SessionStatus.PENDING, SessionStatus.SCHEDULED, SessionStatus.RUNNING})


class SessionKind(enum.StrEnum):
    TRAINING = "training"
    GRADING = "grading"  # scheduled ahead of training
    # A competition organiser's re-run of a model submission's training, as the team's
    # own session, paid by the organiser (`services.competitions.reproductions`).
    REPRODUCTION = "reproduction"


# The owner part of grading sessions' ids (grade/41): a name no user may take.
GRADE = "grade"
REPRODUCE = "reproduce"
# The sessions the platform starts for a user: their ids are NAME/ID, they take none of
# the user's session numbers, and no user may be called NAME.
PLATFORM_KINDS = {SessionKind.GRADING.value: GRADE, SessionKind.REPRODUCTION.value: REPRODUCE}
RESERVED_NAMES = frozenset(PLATFORM_KINDS.values())


class Session(db.Model):  # type: ignore[name-defined]
    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("user_id", "number"),
        Index("ix_sessions_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=SessionStatus.PENDING.value)
    kind: Mapped[str] = mapped_column(
        String(16), default=SessionKind.TRAINING.value, server_default="training"
    )
    status_reason: Mapped[str] = mapped_column(Text, default="")
    entry: Mapped[str] = mapped_column(String(512))
    args: Mapped[str] = mapped_column(Text, default="")
    code_digest: Mapped[str] = mapped_column(String(64))
    code_bytes: Mapped[int] = mapped_column(default=0)
    gpus: Mapped[int] = mapped_column(default=0)
    # Instead of whole GPUs, a share of one: thousandths of it (`-g 0.25`), or as much of
    # it as this much of its memory (`--gpu-memory 10G`, measured on the node's GPUs).
    gpu_milli: Mapped[int] = mapped_column(default=0, server_default="0")
    gpu_memory_mb: Mapped[int] = mapped_column(default=0, server_default="0")
    cpus: Mapped[float] = mapped_column(Float, default=1.0)
    memory_mb: Mapped[int] = mapped_column(default=2048)
    image: Mapped[str] = mapped_column(String(256), default="")
    # The digest of the environment its code folder asks for (requirements.txt, apt.txt,
    # Dockerfile), built on nodes as podium/env:<digest>; empty: none.
    environment: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # The SDK's last batch of scalars stored: a retried batch is not stored twice.
    events_stream: Mapped[str] = mapped_column(String(64), default="", server_default="")
    events_seq: Mapped[int] = mapped_column(BigInteger, default=-1, server_default="-1")
    # GPU models it may run on, "|"-separated as in cluster traces; empty: any.
    gpu_models: Mapped[str] = mapped_column(String(256), default="", server_default="")
    memo: Mapped[str] = mapped_column(Text, default="")
    forked_from: Mapped[str] = mapped_column(String(128), default="", server_default="")
    # The checkpoint it starts from (copied from the session it was forked from).
    resume_checkpoint: Mapped[str] = mapped_column(String(128), default="", server_default="")
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id", ondelete="SET NULL"))
    # The GPU indices it held on its node, kept after the allocation is released.
    gpu_indices: Mapped[str] = mapped_column(String(128), default="")
    exit_code: Mapped[int | None]
    stop_requested: Mapped[bool] = mapped_column(default=False)
    # Why the platform asked it to stop ("out of credit"); empty: its owner did.
    stop_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Its program bound `save` (the SDK said so): it checkpoints on SIGUSR1.
    saves_on_signal: Mapped[bool] = mapped_column(default=False, server_default="0")
    # Flagged stalled after this many minutes without a log line or a reported scalar.
    stall_minutes: Mapped[int | None]
    stalled_at: Mapped[datetime | None]
    # Charged up to here (credits are drawn while it runs).
    charged_until: Mapped[datetime | None]
    # Its owner's credit ran out: told to checkpoint, it is stopped at this time.
    credit_stop_at: Mapped[datetime | None]
    # Its node is being drained with --migrate: told to checkpoint at this time, it goes
    # on elsewhere from the checkpoint it saves (`portal/services/migration.py`).
    migrating_since: Mapped[datetime | None]
    # What its program does at `sdk.bind`: train (run on), serve (answer a server's
    # predictions: `server_id`), or infer (predict `input_digest`, upload them as
    # `predictions_digest`, end).
    mode: Mapped[str] = mapped_column(String(8), default="train", server_default="train")
    # (No foreign key: SQLite cannot add one to a table, or drop a column under one,
    # without copying the table; servers are never deleted but with their user.)
    server_id: Mapped[int | None] = mapped_column(index=True)
    input_digest: Mapped[str] = mapped_column(String(64), default="", server_default="")
    predictions_digest: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # Serving: when it first asked for requests (it loaded the checkpoint: it is ready).
    served_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    scheduled_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()
    node: Mapped[Node | None] = relationship()
    allocations: Mapped[list[Allocation]] = relationship(
        back_populates="session", cascade="all, delete-orphan"
    )

    @property
    def ident(self) -> str:
        """The id users see and type: USER/N; a grading session's is grade/ID and a
        reproduction's reproduce/ID (neither is one of its owner's training sessions, and
        neither takes one of their numbers)."""
        return f"{self.ident_owner}/{self.ident_number}"

    @property
    def ident_owner(self) -> str:
        return PLATFORM_KINDS.get(self.kind) or self.user.username

    @property
    def ident_number(self) -> int:
        return self.id if self.kind in PLATFORM_KINDS else self.number

    @property
    def gpu_model_set(self) -> frozenset[str]:
        return frozenset(m for m in self.gpu_models.split("|") if m)

    @property
    def shares_gpu(self) -> bool:
        return bool(self.gpu_milli or self.gpu_memory_mb)

    @property
    def gpu_amount(self) -> float:
        """The GPUs it takes, a share of one as its fraction: what it is charged for. A
        share by memory is the part of the GPU it was placed on (before it is placed,
        and after it ends, a whole GPU at most)."""
        if not self.shares_gpu:
            return float(self.gpus)
        held = [a.milli for a in self.allocations]
        if held:
            return held[0] / 1000
        return self.gpu_milli / 1000 if self.gpu_milli else 1.0

    @property
    def gpu_index_list(self) -> list[int]:
        return [int(i) for i in self.gpu_indices.split(",") if i]

    @property
    def state(self) -> SessionStatus:
        return SessionStatus(self.status)


class Allocation(db.Model):  # type: ignore[name-defined]
    """A GPU, or a share of one, held by one active session; rows are deleted when the
    session ends. Several sessions may hold shares of one GPU: a placement locks the
    rows of the GPUs it takes (`Gpu`) and checks that what is held of each stays within
    one whole GPU, so that two schedulers (a failover in flight) cannot over-commit
    one (`scheduler/loop.py`)."""

    __tablename__ = "allocations"
    __table_args__ = (Index("ix_allocations_gpu", "node_id", "gpu_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    gpu_index: Mapped[int]
    # Thousandths of the GPU held: 1000 for a whole one.
    milli: Mapped[int] = mapped_column(default=1000, server_default="1000")

    session: Mapped[Session] = relationship(back_populates="allocations")


class LogLine(db.Model):  # type: ignore[name-defined]
    __tablename__ = "log_lines"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    seq: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScalarChunk(db.Model):  # type: ignore[name-defined]
    """Points of one series (session, tag) as they arrived: steps, values and wall times
    as zlib-compressed numpy arrays (`portal/services/metrics.py`). Its id orders
    arrivals: a client following a session asks for the chunks after the last it read."""

    __tablename__ = "scalar_chunks"
    __table_args__ = (Index("ix_scalar_chunks_series", "session_id", "tag", "first_step"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(128))
    first_step: Mapped[int] = mapped_column(BigInteger)
    last_step: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ScalarSeries(db.Model):  # type: ignore[name-defined]
    """One series' totals and its plot summary, kept up to date as points arrive: the
    summary's last rows (`summary_tail`, the only ones most batches change) here, the
    rows before them in `summary_blocks` full blocks of `ScalarSummaryBlock`."""

    __tablename__ = "scalar_series"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    small_chunks: Mapped[int] = mapped_column(default=0)
    first_step: Mapped[int] = mapped_column(BigInteger, default=0)
    last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    last_value: Mapped[float] = mapped_column(Float, default=0.0)
    first_wall: Mapped[float] = mapped_column(Float, default=0.0)
    last_wall: Mapped[float] = mapped_column(Float, default=0.0)
    min_value: Mapped[float] = mapped_column(Float, default=0.0)
    max_value: Mapped[float] = mapped_column(Float, default=0.0)
    bucket_width: Mapped[int] = mapped_column(BigInteger, default=1)
    summary_blocks: Mapped[int] = mapped_column(default=0)
    summary_tail: Mapped[bytes] = mapped_column(LargeBinary, default=b"")


class ScalarSummaryBlock(db.Model):  # type: ignore[name-defined]
    """A full block of a series' summary rows (`portal/services/metrics.py`): written
    once, rewritten only when the series' buckets widen or a step lands before them."""

    __tablename__ = "scalar_summary_blocks"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)
    block: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Checkpoint(db.Model):  # type: ignore[name-defined]
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("session_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
