"""Models served over REST (`podium serve`): a server and the replica sessions that
answer its predictions (`portal/services/serving.py`)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Float, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.user import User
from portal.timeutil import utcnow


class ServerStatus(enum.StrEnum):
    RUNNING = "running"  # its replicas run, or are restarted when they end
    STOPPED = "stopped"  # its owner (or an admin) stopped it
    FAILED = "failed"  # its replicas kept failing before they were ever ready


class Server(db.Model):  # type: ignore[name-defined]
    __tablename__ = "servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    # POST /api/v1/serve/NAME/predict: unique among servers
    name: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The session whose code and checkpoint it serves (its id, kept if it is removed).
    source: Mapped[str] = mapped_column(String(128))
    source_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL")
    )
    checkpoint: Mapped[str] = mapped_column(String(128))
    replicas: Mapped[int] = mapped_column(default=1)
    gpus: Mapped[int] = mapped_column(default=0)
    gpu_milli: Mapped[int] = mapped_column(default=0)
    timeout_s: Mapped[float] = mapped_column(Float, default=30.0)
    status: Mapped[str] = mapped_column(String(16), default=ServerStatus.RUNNING.value)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    restarts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()
