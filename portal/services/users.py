"""Accounts as administrators see them: lookup, levels, approval."""

from __future__ import annotations

from sqlalchemy import func, select

from portal.errors import Conflict, NotFound
from portal.extensions import db
from portal.models import Level, User


def find_user(viewer: User, username: str) -> User:
    """The user, if `viewer` may see them (themself, or any user for an admin)."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None or not (viewer.is_admin or viewer.id == user.id):
        raise NotFound(f"no user {username!r}")
    return user


def everyone() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.username)))


def change(user: User, *, level: str | None = None, active: bool | None = None) -> User:
    """An administrator sets a user's level, or approves (activates) or suspends them."""
    if level is not None:
        new_level = Level(level)
        if user.is_admin and new_level is not Level.ADMIN and _admins() == 1:
            raise Conflict(f"{user.username} is the last administrator")
        user.level = new_level.value
    if active is not None:
        if not active and user.is_admin and _admins() == 1:
            raise Conflict(f"{user.username} is the last administrator")
        # A suspended account's tokens stop working at once: every request checks.
        user.active = active
    db.session.commit()
    return user


def _admins() -> int:
    return (
        db.session.scalar(
            select(func.count(User.id)).where(
                User.level == Level.ADMIN.value, User.active.is_(True)
            )
        )
        or 0
    )


def user_dict(user: User) -> dict:
    return {
        "username": user.username,
        "is_admin": user.is_admin,
        "level": user.level,
        "active": user.active,
        "email": user.email,
        "credit": user.credit,
        "created_at": user.created_at,
    }
