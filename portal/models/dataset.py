from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.user import User
from portal.timeutil import utcnow


class Visibility(enum.StrEnum):
    PUBLIC = "public"  # everyone, without an account too
    PRIVATE = "private"  # its owner (and administrators)
    TEAM = "team"  # its owner and the members of its team


class Team(db.Model):  # type: ignore[name-defined]
    """A group of users who share sessions, datasets and models. Competition teams are
    another thing: one per competition, made by its participants."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    members: Mapped[list[TeamMember]] = relationship(
        back_populates="team", cascade="all, delete-orphan"
    )
    invitations: Mapped[list[TeamInvitation]] = relationship(
        back_populates="team", cascade="all, delete-orphan"
    )


class TeamMember(db.Model):  # type: ignore[name-defined]
    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("team_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)

    team: Mapped[Team] = relationship(back_populates="members")
    user: Mapped[User] = relationship()


class TeamInvitation(db.Model):  # type: ignore[name-defined]
    """An offer of membership that only the invited user can turn into one: members
    read each other's work, so nobody is made a member without saying yes."""

    __tablename__ = "team_invitations"
    __table_args__ = (UniqueConstraint("team_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    inviter_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    team: Mapped[Team] = relationship(back_populates="invitations")
    user: Mapped[User] = relationship(foreign_keys=[user_id])
    inviter: Mapped[User] = relationship(foreign_keys=[inviter_id])


class Dataset(db.Model):  # type: ignore[name-defined]
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    visibility: Mapped[str] = mapped_column(String(16), default=Visibility.PRIVATE.value)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    description: Mapped[str] = mapped_column(Text, default="")
    # Mounted by sessions, never downloaded (a competition round's training data): every
    # route that would hand its bytes, or a session's copy of them, to anyone but its
    # owner refuses (`datasets.check_leaves`).
    sessions_only: Mapped[bool] = mapped_column(default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_accessed_at: Mapped[datetime] = mapped_column(default=utcnow)

    owner: Mapped[User] = relationship()
    team: Mapped[Team | None] = relationship()
    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", order_by="DatasetVersion.number"
    )


class DatasetVersion(db.Model):  # type: ignore[name-defined]
    """An immutable version: its archive is stored by digest, its content by hash."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "number"),
        UniqueConstraint("dataset_id", "content_digest"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    number: Mapped[int]
    digest: Mapped[str] = mapped_column(String(64))  # of the archive, in the artifact store
    content_digest: Mapped[str] = mapped_column(String(64))  # of the files it holds
    size_bytes: Mapped[int]  # unpacked
    file_count: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="versions")

    @property
    def ident(self) -> str:
        return f"{self.dataset.name}:{self.number}"


class SessionDataset(db.Model):  # type: ignore[name-defined]
    """A dataset version a session mounts, kept so that the session can be reproduced."""

    __tablename__ = "session_datasets"
    __table_args__ = (UniqueConstraint("session_id", "mount"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    # Kept as text too: the version may be removed once no running session uses it.
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="SET NULL"), index=True
    )
    ref: Mapped[str] = mapped_column(String(80))
    mount: Mapped[str] = mapped_column(String(64))

    version: Mapped[DatasetVersion | None] = relationship()
