"""Who is calling: bearer tokens for users and sessions, node tokens for agents."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from flask import g, request

from portal.errors import Forbidden, Unauthorized
from portal.extensions import db
from portal.services import auth, nodes
from portal.services.artifacts import TooLarge
from portal.timeutil import utcnow

LAST_USED_RESOLUTION = timedelta(minutes=1)
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _bearer_secret() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("authentication required: log in with `podium login`")
    return secret.strip()


def token_required(*, session_scope: bool = False) -> Callable:
    """Require a user's bearer token. With `session_scope`, a session-scoped token (the
    SDK's, inside a running session) is accepted too, and `g.scope_session_id` is set."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any):
            token = auth.resolve_token(_bearer_secret())
            if token.session_id is not None and not session_scope:
                raise Forbidden("a session's token cannot do this", code="session_token")
            now = utcnow()
            # Written at most once a minute: a followed log polls several times a second.
            if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
                token.last_used_at = now
                db.session.commit()
            g.user = token.user
            g.token = token
            g.scope_session_id = token.session_id
            return view(*args, **kwargs)

        return wrapper

    return decorator


def token_optional(view: Callable) -> Callable:
    """Let anonymous callers through with `g.user = None`; a token, if sent, must be good."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        if request.headers.get("Authorization"):
            return token_required()(view)(*args, **kwargs)
        g.user, g.token, g.scope_session_id = None, None, None
        return view(*args, **kwargs)

    return wrapper


def admin_required(view: Callable) -> Callable:
    @wraps(view)
    @token_required()
    def wrapper(*args: Any, **kwargs: Any):
        if not g.user.is_admin:
            raise Forbidden("this needs an administrator")
        return view(*args, **kwargs)

    return wrapper


def node_required(view: Callable) -> Callable:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        g.node = nodes.authenticate_node(_bearer_secret())
        return view(*args, **kwargs)

    return wrapper


def read_body(limit: int) -> bytes:
    """The request's body, refused (413) past `limit` bytes: by its Content-Length before
    anything is read, or once `limit` is passed (a chunked body), so that memory stays
    bounded whatever a client sends."""
    if (request.content_length or 0) > limit:
        raise TooLarge(limit)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(limit)
    return data
