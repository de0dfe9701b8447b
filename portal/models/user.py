from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from portal.extensions import db
from portal.timeutil import utcnow


class Level(enum.StrEnum):
    """What a user is trusted with; each level may do what the ones before it may.

    Everyone runs sessions and enters competitions, their code only in an isolating
    runtime; an organiser also creates competitions (their scorers run isolated); a
    trusted user's sessions may also run on the local runtime (never as root); an
    administrator may do everything.
    """

    USER = "user"
    ORGANISER = "organiser"
    TRUSTED = "trusted"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Level).index(self)


class User(UserMixin, db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(256))
    level: Mapped[str] = mapped_column(String(16), default=Level.USER.value, server_default="user")
    # False while a sign-up waits for an administrator's approval.
    active: Mapped[bool] = mapped_column(default=True, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The number given to this user's next session: ids read USER/N.
    next_session_number: Mapped[int] = mapped_column(default=1)
    # Credit left (1 credit buys a GPU-hour at the default rates: `portal/services/credits.py`);
    # nothing of theirs starts, and what runs is stopped, once it reaches zero.
    credit: Mapped[float] = mapped_column(default=100.0, server_default="100")
    # Whether they are told by e-mail as well as in the portal (when the site sends mail).
    email_alerts: Mapped[bool] = mapped_column(default=True, server_default="1")

    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    def at_least(self, level: Level) -> bool:
        return Level(self.level).rank >= level.rank

    @property
    def is_admin(self) -> bool:
        return self.level == Level.ADMIN.value

    @property
    def may_organise(self) -> bool:
        return self.at_least(Level.ORGANISER)

    @property
    def is_trusted(self) -> bool:
        """May run code outside an isolating runtime (the local runtime)."""
        return self.at_least(Level.TRUSTED)

    @property
    def is_active(self) -> bool:  # flask-login refuses inactive users a login
        return bool(self.active)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class ApiToken(db.Model):  # type: ignore[name-defined]
    """A bearer token, stored only as its SHA-256 digest.

    A token with `session_id` set is scoped to one training session: the SDK inside
    that session uses it to report events and upload checkpoints, and nothing else.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(64), default="cli")
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


class SignupInvitation(db.Model):  # type: ignore[name-defined]
    """A code an administrator hands out, where sign-up needs one."""

    __tablename__ = "signup_invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    uses_left: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
