"""Models served over REST (`podium serve`): start, list, show, stop, and predict."""

from __future__ import annotations

import json

from flask import current_app, g, request
from flask_smorest import Blueprint

from portal.api.guards import BEARER, token_required
from portal.api.schemas import PredictOut, ServeIn, ServeListArgs, ServerListOut, ServerOut
from portal.errors import ApiError
from portal.queue import redis_connection, redis_waits
from portal.services import serving as service
from portal.services import sessions as session_service

PREFIX = "/serve"
blp = Blueprint("api_serving", __name__, description="Models served over REST")
SERVER = "/<name>"


@blp.route("", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ServeIn)
@blp.response(201, ServerOut)
@token_required()
def start_server(payload):
    """Serve a session's checkpoint (its last by default) from `replicas` sessions of
    yours; its predictions at POST /api/v1/serve/NAME/predict."""
    source = session_service.find_session(g.user, payload["session"])
    server = service.start(
        g.user,
        source,
        checkpoint=payload["checkpoint"],
        replicas=payload["replicas"],
        gpus=payload["gpus"],
        name=payload["name"],
        timeout_s=payload["timeout_s"],
    )
    session_service.wake(redis_connection())
    return service.server_dict(server, redis_connection())


@blp.route("", methods=["GET"])
@blp.doc(security=BEARER)
@blp.arguments(ServeListArgs, location="query")
@blp.response(200, ServerListOut(many=True))
@token_required()
def list_servers(args):
    """My servers, newest first (`all=true`: everyone's, administrators)."""
    return [
        service.server_dict(s, details=False) for s in service.listing(g.user, everyone=args["all"])
    ]


@blp.route(SERVER, methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, ServerOut)
@token_required()
def get_server(name: str):
    """A server: its replicas, requests, errors and latencies."""
    return service.server_dict(service.find(g.user, name), redis_connection())


@blp.route(SERVER + "/stop", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, ServerOut)
@token_required()
def stop_server(name: str):
    """Stop a server and its replicas."""
    server = service.find(g.user, name, change=True)
    return service.server_dict(service.stop(server, redis_connection()), redis_connection())


@blp.route(SERVER + "/predict", methods=["POST"])
@blp.doc(
    security=BEARER,
    requestBody={
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": 'rows to predict, {"rows": [[id, x1, ...], ...]}, or a CSV '
                    'file\'s text, {"csv": "id,x1,...\\n..."}: what the model\'s infer reads',
                }
            }
        },
    },
)
@blp.response(200, PredictOut)
@token_required()
def predict(name: str):
    """Predictions of the served model: 503 while no replica is ready, 504 past the
    server's timeout, 422 when the model's infer raised, 413 past the size limit."""
    limit = current_app.config["SERVE_MAX_BODY_BYTES"]
    if (request.content_length or 0) > limit:
        raise ApiError(f"the body is over {limit} bytes", code="too_large", status=413)
    raw = request.get_data(cache=False)
    if len(raw) > limit:
        raise ApiError(f"the body is over {limit} bytes", code="too_large", status=413)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError("the body is not JSON", code="invalid_input") from None
    server = service.find(g.user, name)
    checked = service.check_body(body)
    return {"predictions": service.predict(server, checked, redis_connection(), redis_waits())}
