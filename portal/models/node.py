from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.timeutil import utcnow
from portal.trust import ISOLATING_RUNTIMES


class NodeStatus(enum.StrEnum):
    READY = "ready"
    LOST = "lost"  # heartbeats stopped
    DRAINED = "drained"  # takes no new sessions
    REMOVED = "removed"  # removed by an administrator: its token is refused


class Node(db.Model):  # type: ignore[name-defined]
    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=NodeStatus.READY.value)
    runtime: Mapped[str] = mapped_column(String(32), default="local")
    hostname: Mapped[str] = mapped_column(String(255), default="")
    cpu_count: Mapped[int] = mapped_column(default=1)
    memory_mb: Mapped[int] = mapped_column(default=0)
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The latest resource sample the agent sent: cpu and memory use, per-GPU use.
    sample: Mapped[dict] = mapped_column(JSON, default=dict)
    # What the node holds already, for locality: image names, dataset versions.
    images: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")
    datasets: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")
    # The environment images it holds: [{"tag", "size_bytes", "last_used_at", "in_use"}].
    environments: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")
    # Usernames whose sessions alone this node runs, when it cannot isolate sessions
    # from its agent (a local-runtime agent that is not root); empty: anyone's it may.
    operators: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")

    @property
    def isolating(self) -> bool:
        """Runs sessions in containers: strangers' code may run here."""
        return self.runtime in ISOLATING_RUNTIMES

    gpus: Mapped[list[Gpu]] = relationship(
        back_populates="node", cascade="all, delete-orphan", order_by="Gpu.index"
    )


class Gpu(db.Model):  # type: ignore[name-defined]
    __tablename__ = "gpus"
    __table_args__ = (UniqueConstraint("node_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    index: Mapped[int]
    uuid: Mapped[str] = mapped_column(String(128), default="")
    model: Mapped[str] = mapped_column(String(128), default="")
    memory_mb: Mapped[int] = mapped_column(default=0)
    simulated: Mapped[bool] = mapped_column(default=False)

    node: Mapped[Node] = relationship(back_populates="gpus")


class NodeJoinToken(db.Model):  # type: ignore[name-defined]
    """The cluster's join token (its SHA-256): the latest one is the only one accepted,
    until an administrator rotates it."""

    __tablename__ = "node_join_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
