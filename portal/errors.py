"""One error shape for the whole API: {"error": {"code", "message", "details"}}.

Web pages get the same error rendered as HTML; the choice follows the request path
and its Accept header, as in microblog's single error helper.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException


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


def register_error_handlers(app: Flask) -> None:
    # Registered after flask-smorest's own handler, so this one wins.
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(RecursionError, _handle_recursion)
