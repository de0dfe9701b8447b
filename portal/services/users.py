"""Accounts as administrators see them: lookup and GPU credit."""

from __future__ import annotations

import math

from sqlalchemy import select

from portal.errors import ApiError, NotFound
from portal.extensions import db
from portal.models import User


def find_user(viewer: User, username: str) -> User:
    """The user, if `viewer` may see them (themself, or any user for an admin)."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None or not (viewer.is_admin or viewer.id == user.id):
        raise NotFound(f"no user {username!r}")
    return user


def add_credit(user: User, gpu_hours: float) -> User:
    if not math.isfinite(gpu_hours):
        raise ApiError("credit must be a finite number of GPU-hours", code="invalid_input")
    user.credit_gpu_hours += gpu_hours
    db.session.commit()
    return user
