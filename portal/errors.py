"""One error shape for the whole API: {"error": {"code", "message", "details"}}.

Web pages get the same error rendered as HTML; the choice follows the request path
and its Accept header, as in microblog's single error helper.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

NO_SPACE = "the platform's storage is full: nothing was kept; try again once space is freed"


class ApiError(Exception):
    """A refusal the user can act on. Raise it from services; nothing is changed."""

    status = 400

    def __init__(
        self, message: str, *, code: str = "bad_request", status: int | None = None, details=None
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        if status is not None:
            self.status = status
        self.details = details or {}


class NotFound(ApiError):
    status = 404

    def __init__(self, message: str = "not found", *, code: str = "not_found", **kwargs: Any):
        super().__init__(message, code=code, **kwargs)


class Forbidden(ApiError):
    status = 403

    def __init__(self, message: str = "forbidden", *, code: str = "forbidden", **kwargs: Any):
        super().__init__(message, code=code, **kwargs)


class Unauthorized(ApiError):
    status = 401

    def __init__(
        self, message: str = "authentication required", *, code: str = "unauthorized", **kwargs: Any
    ):
        super().__init__(message, code=code, **kwargs)


class Conflict(ApiError):
    status = 409

    def __init__(self, message: str, *, code: str = "conflict", **kwargs: Any):
        super().__init__(message, code=code, **kwargs)


def _wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json"


def error_response(status: int, code: str, message: str, details=None) -> tuple[Response, int]:
    if _wants_json():
        body = {"error": {"code": code, "message": message, "details": details or {}}}
        return jsonify(body), status
    html = render_template("error.html", status=status, code=code, message=message)
    return Response(html, mimetype="text/html"), status


def first_problem(messages: Any, path: str = "") -> str:
    """webargs nests field errors; name the first one in plain words."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key in ("json", "form", "query", "files", "headers"):
                return first_problem(value, path)
            return first_problem(value, f"{path}.{key}" if path else str(key))
    if isinstance(messages, list) and messages:
        return first_problem(messages[0], path)
    return f"{path}: {messages}" if path else str(messages)


def _handle_http_exception(exc: HTTPException):
    status = exc.code or 500
    data = getattr(exc, "data", None)
    if status == 422 and data and "messages" in data:
        messages = data["messages"]
        return error_response(422, "invalid_input", first_problem(messages), messages)
    code = (exc.name or "error").lower().replace(" ", "_")
    return error_response(status, code, exc.description or exc.name or "error")


def _handle_api_error(exc: ApiError):
    # A refusal changes nothing: whatever the request had begun is not kept.
    from portal.extensions import db

    db.session.rollback()
    return error_response(exc.status, exc.code, exc.message, exc.details)


def _handle_recursion(_exc: RecursionError):
    # A JSON body nested thousands deep overflows the parser's stack.
    from portal.extensions import db

    db.session.rollback()
    return error_response(400, "invalid_input", "the request body nests too deeply")


def _rolled_back() -> None:
    from portal.extensions import db

    db.session.rollback()


def _handle_redis_down(exc: Exception):
    # A request that needed Redis while it is away (restarting, say) fails for the
    # outage, clearly; the same request succeeds once it is back.
    log.warning("Redis is unavailable: %s", exc)
    _rolled_back()
    return error_response(
        503, "unavailable", "the platform's queue (Redis) is unavailable: try again shortly"
    )


def _handle_os_error(exc: OSError):
    _rolled_back()
    if exc.errno == errno.ENOSPC:
        log.error("no space left: %s", exc)
        return error_response(507, "no_space", NO_SPACE)
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_server_error", "the server failed to answer")


def _handle_database_error(exc: OperationalError):
    _rolled_back()
    text = str(exc.orig) if exc.orig is not None else str(exc)
    if "database or disk is full" in text or "No space left on device" in text:
        log.error("no space left for the database: %s", text)
        return error_response(507, "no_space", NO_SPACE)
    log.warning("the database is unavailable: %s", text)
    return error_response(
        503, "unavailable", "the platform's database is unavailable: try again shortly"
    )


def register_error_handlers(app: Flask) -> None:
    # Registered after flask-smorest's own handler, so this one wins.
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(RecursionError, _handle_recursion)
    app.register_error_handler(RedisConnectionError, _handle_redis_down)
    app.register_error_handler(RedisTimeoutError, _handle_redis_down)
    app.register_error_handler(OSError, _handle_os_error)
    app.register_error_handler(OperationalError, _handle_database_error)
