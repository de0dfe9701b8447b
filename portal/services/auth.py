"""Users, passwords and bearer tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import joinedload
from werkzeug.security import check_password_hash, generate_password_hash

from portal.errors import ApiError, Conflict, Forbidden, Unauthorized
from portal.extensions import db
from portal.models import ApiToken, Level, SignupInvitation, User
from portal.models.session import RESERVED_NAMES
from portal.timeutil import utcnow

TOKEN_PREFIX = "pdm_"
USERNAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast digest is enough: there is nothing
    # to brute-force, and lookups stay a single indexed query.
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_user(
    username: str, password: str, *, level: Level = Level.USER, email=None, active: bool = True
) -> User:
    if username in RESERVED_NAMES:
        raise ApiError(f"{username!r} names the platform's sessions: choose another username")
    if not USERNAME_PATTERN.match(username):
        raise ApiError(
            "a username is 2-32 lower-case letters, digits, '-' or '_', starting with a letter",
            code="invalid_input",
        )
    if len(password) < 4:
        raise ApiError("a password has at least 4 characters", code="invalid_input")
    if db.session.scalar(select(User).where(User.username == username)):
        raise Conflict(f"user {username!r} exists already")
    user = User(username=username, level=level.value, email=email, active=active)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


SIGNUP_MODES = ("open", "approval", "invitation", "closed")


def sign_up(
    username: str,
    password: str,
    *,
    email: str | None,
    mode: str,
    credit: float,
    invitation: str | None = None,
) -> User:
    """A new account made by its owner, at the lowest level, with `credit` GPU-hours.

    `mode` is the portal's sign-up policy: `open`, `approval` (the account waits for an
    administrator), `invitation` (a code an administrator made is needed) or `closed`.
    """
    if mode not in SIGNUP_MODES or mode == "closed":
        raise ApiError(
            "sign-up is closed here: ask an administrator for an account",
            code="signup_closed",
            status=403,
        )
    if len(password) < 8:
        raise ApiError("a password has at least 8 characters", code="invalid_input")
    if mode == "invitation":
        _claim_invitation(invitation or "")
    try:
        user = create_user(username, password, email=email, active=mode != "approval")
    except ApiError:
        db.session.rollback()  # the invitation's use is given back with it
        raise
    user.credit = credit
    db.session.commit()
    return user


def _claim_invitation(code: str) -> None:
    """Take one use of an invitation, in the sign-up's transaction: one conditional
    update, so that sign-ups racing for its last use cannot both have it."""
    claimed = db.session.execute(
        update(SignupInvitation)
        .where(
            SignupInvitation.code_hash == hash_token(code),
            SignupInvitation.uses_left > 0,
            SignupInvitation.expires_at > utcnow(),
        )
        .values(uses_left=SignupInvitation.uses_left - 1)
    ).rowcount  # type: ignore[attr-defined]
    if claimed != 1:
        raise ApiError(
            "sign-up here needs a valid invitation code from an administrator",
            code="invitation_required",
            status=403,
        )


def create_invitation(creator: User, *, uses: int = 1, ttl: timedelta) -> str:
    """A sign-up invitation code (shown once; only its digest is kept)."""
    if not 1 <= uses <= 10_000:
        raise ApiError("an invitation is good for 1 to 10,000 sign-ups", code="invalid_input")
    code = "inv_" + secrets.token_urlsafe(18)
    db.session.add(
        SignupInvitation(
            code_hash=hash_token(code),
            created_by_id=creator.id,
            uses_left=uses,
            expires_at=utcnow() + ttl,
        )
    )
    db.session.commit()
    return code


# Checked against when the username is unknown, so that the answer takes as long as
# for a known one and timing does not tell which usernames exist.
_UNKNOWN_USER_HASH = generate_password_hash(secrets.token_hex(16))


def authenticate(username: str, password: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        check_password_hash(_UNKNOWN_USER_HASH, password)
        raise Unauthorized("wrong username or password", code="bad_credentials")
    if not user.check_password(password):
        raise Unauthorized("wrong username or password", code="bad_credentials")
    _check_active(user)
    return user


def _check_active(user: User) -> None:
    if not user.active:
        raise Forbidden(
            "this account waits for an administrator's approval", code="account_inactive"
        )


def issue_token(
    user: User, *, ttl: timedelta, label: str = "cli", session_id: int | None = None
) -> str:
    secret = new_secret()
    db.session.add(
        ApiToken(
            user=user,
            token_hash=hash_token(secret),
            label=label,
            session_id=session_id,
            expires_at=utcnow() + ttl,
        )
    )
    db.session.commit()
    return secret


def resolve_token(secret: str) -> ApiToken:
    """The live token for `secret`, or Unauthorized saying why not."""
    token = db.session.scalar(
        select(ApiToken)
        .options(joinedload(ApiToken.user))  # every caller needs its user: one query
        .where(ApiToken.token_hash == hash_token(secret))
    )
    if token is None:
        raise Unauthorized("invalid token: log in again with `podium login`", code="bad_token")
    if token.revoked_at is not None:
        raise Unauthorized("this token was revoked: log in again", code="token_revoked")
    if token.expires_at <= utcnow():
        raise Unauthorized("this token has expired: log in again", code="token_expired")
    _check_active(token.user)
    return token


def revoke_token(token: ApiToken) -> None:
    token.revoked_at = utcnow()
    db.session.commit()


def revoke_session_tokens(session_id: int) -> None:
    for token in db.session.scalars(
        select(ApiToken).where(ApiToken.session_id == session_id, ApiToken.revoked_at.is_(None))
    ):
        token.revoked_at = utcnow()
