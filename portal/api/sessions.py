from __future__ import annotations

import json

from flask import current_app, g, request, send_file
from flask_smorest import Blueprint

from portal.api.code import artifact_store
from portal.api.guards import BEARER, token_required
from portal.api.schemas import (
    AcceptedOut,
    BoundIn,
    CheckpointOut,
    CommandOut,
    EventsArgs,
    EventsIn,
    EventsOut,
    ExecIn,
    ExecOut,
    ForkIn,
    InferArgs,
    LogsArgs,
    LogsOut,
    ResourcesArgs,
    ResourcesOut,
    ResumeIn,
    ScalarsArgs,
    SeriesOut,
    ServeNextArgs,
    ServeNextOut,
    ServeRepliesIn,
    SessionIn,
    SessionListArgs,
    SessionOut,
    SessionPatchIn,
)
from portal.errors import ApiError, Conflict, Forbidden, NotFound
from portal.extensions import db
from portal.models import Session
from portal.queue import redis_connection, redis_waits
from portal.services import checkpoints, metrics, monitoring, serving
from portal.services import sessions as service

PREFIX = "/sessions"
blp = Blueprint("api_sessions", __name__, description="Training sessions")
SESSION = "/<username>/<int:number>"


def _find(username: str, number: int, *, change: bool = False) -> Session:
    session = service.find_session(
        g.user, f"{username}/{number}", change=change, scope=g.scope_session_id
    )
    if g.scope_session_id is not None and g.scope_session_id != session.id:
        raise NotFound(f"no session {username}/{number}")
    return session


def session_request(payload: dict) -> service.SessionRequest:
    """What a session (or each of a search's) is asked to be, from `SessionIn`; the code
    archive must be one the caller uploaded or runs."""
    if not service.may_use_code(
        g.user, payload["code_digest"], artifact_store(), current_app.extensions.get("redis")
    ):
        raise ApiError("upload the code archive first (PUT /api/v1/code)", code="unknown_code")
    config = current_app.config
    return service.SessionRequest(
        entry=payload["entry"],
        code_digest=payload["code_digest"],
        code_bytes=artifact_store().path(payload["code_digest"]).stat().st_size,
        args=payload.get("args", ""),
        gpus=int(payload["gpus"]) if payload["gpus"] >= 1 else 0,
        gpu_milli=round(payload["gpus"] * 1000) if payload["gpus"] < 1 else 0,
        gpu_memory_mb=payload["gpu_memory_mb"],
        cpus=payload["cpus"] or config["DEFAULT_CPUS"],
        memory_mb=payload["memory_mb"] or config["DEFAULT_MEMORY_MB"],
        image=payload["image"],
        gpu_models=tuple(payload["gpu_models"]),
        datasets=tuple(payload["datasets"]),
        memo=payload["memo"],
        stall_minutes=payload.get("stall_minutes"),
    )


@blp.route("", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(SessionIn)
@blp.response(201, SessionOut)
@token_required()
def create_session(payload):
    """Start a session from an uploaded code archive."""
    session = service.create_session(
        g.user,
        session_request(payload),
        redis=redis_connection(),
        archive=artifact_store().path(payload["code_digest"]),
        max_unpacked_bytes=current_app.config["MAX_CODE_UNPACKED_BYTES"],
    )
    service.forget_upload(current_app.extensions.get("redis"), g.user, session.code_digest)
    return service.session_dict(session)


@blp.route("", methods=["GET"])
@blp.doc(security=BEARER)
@blp.arguments(SessionListArgs, location="query")
@blp.response(200, SessionOut(many=True))
@token_required()
def list_sessions(args):
    """My sessions, newest first; `all=true` lists everyone's (administrators). Filters:
    status, user (administrators), a part of the entry or memo, an argument's value
    (`arg=lr=0.1`); `metric=TAG&by=last|min|max&order=asc|desc` orders by a metric;
    `offset` and `limit` page (the total is in the `X-Total-Count` header)."""
    found, total = service.search_sessions(g.user, service.filter_from(args))
    return [service.session_dict(s) for s in found], 200, {"X-Total-Count": str(total)}


@blp.route(SESSION, methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, SessionOut)
@token_required(session_scope=True)
def get_session(username: str, number: int):
    """One session."""
    return service.session_dict(_find(username, number))


@blp.route(SESSION, methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@token_required()
def remove_session(username: str, number: int):
    """Remove an ended session with its logs, events and checkpoints."""
    service.remove_session(_find(username, number, change=True), store=artifact_store())


@blp.route(SESSION, methods=["PATCH"])
@blp.doc(security=BEARER)
@blp.arguments(SessionPatchIn)
@blp.response(200, SessionOut)
@token_required()
def patch_session(payload, username: str, number: int):
    """Change a session's memo."""
    session = service.set_memo(_find(username, number, change=True), payload["memo"])
    return service.session_dict(session)


@blp.route(SESSION + "/resume", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ResumeIn)
@blp.response(201, SessionOut)
@token_required()
def resume_session(payload, username: str, number: int):
    """Go on from a stopped, failed, killed or lost session's last checkpoint (or the one
    named), as a new session linked to it."""
    session = service.resume(
        g.user,
        _find(username, number, change=True),
        checkpoint=payload["checkpoint"],
        store=artifact_store(),
        redis=redis_connection(),
    )
    return service.session_dict(session)


@blp.route(SESSION + "/code", methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, description="the session's code archive, a gzipped tar")
@token_required()
def download_code(username: str, number: int):
    """The code a session ran (for `podium diff`)."""
    session = _find(username, number)
    return send_file(
        artifact_store().path(session.code_digest),
        mimetype="application/gzip",
        as_attachment=True,
        download_name=f"{username}-{number}-code.tar.gz",
    )


@blp.route(SESSION + "/stop", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, SessionOut)
@token_required()
def stop_session(username: str, number: int):
    """Stop a session: pending ones at once, running ones by their node."""
    session = service.request_stop(_find(username, number, change=True), redis=redis_connection())
    return service.session_dict(session)


@blp.route(SESSION + "/exec", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ExecIn)
@blp.response(200, ExecOut)
@token_required()
def exec_command(payload, username: str, number: int):
    """Run a command beside a running session (in its container), and answer its output."""
    return service.exec_in_session(
        _find(username, number, change=True),
        payload["command"],
        redis_connection(),
        timeout=payload["timeout"],
        viewer=g.user,
    )


@blp.route(SESSION + "/fork", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ForkIn)
@blp.response(201, SessionOut)
@token_required()
def fork_session(payload, username: str, number: int):
    """Start a new session of mine from a session I may see (mine or a teammate's)."""
    session = service.fork(
        g.user,
        _find(username, number),
        args=payload["args"],
        checkpoint=payload["checkpoint"],
        store=artifact_store(),
        redis=redis_connection(),
    )
    return service.session_dict(session)


@blp.route(SESSION + "/command", methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, CommandOut)
@token_required()
def command(username: str, number: int):
    """The exact command line the session runs."""
    return {"command": service.command_line(_find(username, number))}


@blp.route(SESSION + "/logs", methods=["GET"])
@blp.doc(security=BEARER)
@blp.arguments(LogsArgs, location="query")
@blp.response(200, LogsOut)
@token_required()
def logs(args, username: str, number: int):
    """Log lines after `after`, with the session's state for followers."""
    session = _find(username, number)
    lines = service.read_logs(session, after=args["after"], limit=args["limit"])
    return {"session": service.session_dict(session), "lines": lines}


@blp.route(SESSION + "/events", methods=["GET"])
@blp.doc(security=BEARER)
@blp.arguments(EventsArgs, location="query")
@blp.response(200, EventsOut)
@token_required(session_scope=True)
def list_events(args, username: str, number: int):
    """Reported scalars stored after the cursor `after` (0: from the start), optionally
    of one tag, with the cursor to ask with next."""
    session = _find(username, number)
    events, cursor = metrics.after(session, args["after"], tag=args["tag"])
    return {"events": events, "cursor": cursor}


@blp.route(SESSION + "/series", methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, SeriesOut(many=True))
@token_required(session_scope=True)
def list_series(username: str, number: int):
    """Each reported tag: points, first and last step, last value, minimum, maximum."""
    return [metrics.series_dict(s) for s in metrics.series_of(_find(username, number))]


@blp.route(SESSION + "/scalars", methods=["GET"])
@blp.doc(
    security=BEARER,
    responses={200: {"description": "columns step, value and wall_time of one tag"}},
)
@blp.arguments(ScalarsArgs, location="query")
@token_required(session_scope=True)
def read_scalars(args, username: str, number: int):
    """One tag's points as columns, within [start, end] when given; with `points`,
    downsampled to about that many buckets (each one's minimum and maximum, the last
    point exact)."""
    session = _find(username, number)
    if args["points"]:
        line = metrics.line(session, args["tag"], args["points"], args["start"], args["end"])
    else:
        line = metrics.columns(session, args["tag"], args["start"], args["end"])
    if line is None:
        raise NotFound(f"session {session.ident} reported no {args['tag']!r}")
    # Not through a schema: this is the hot read path.
    return current_app.response_class(json.dumps(line), mimetype="application/json")


@blp.route(SESSION + "/events", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(EventsIn)
@blp.response(201, AcceptedOut)
@token_required(session_scope=True)
def report_events(payload, username: str, number: int):
    """Record scalars (the SDK's `report`): as columns per tag (`scalars`), or as rows
    (`events`); a batch numbered (`stream`, `seq`) at or below the last one stored of its
    stream was stored already and is not stored again."""
    session = _find(username, number, change=True)
    return {"accepted": metrics.record(session, payload)}


@blp.route(SESSION + "/resources", methods=["GET"])
@blp.doc(security=BEARER)
@blp.arguments(ResourcesArgs, location="query")
@blp.response(200, ResourcesOut)
@token_required()
def resources(args, username: str, number: int):
    """Its resource history as its node sampled it: per GPU utilisation, memory,
    temperature and power; CPU and memory; with averages and peaks. Simulated GPUs
    report nothing (`simulated_gpus`)."""
    return monitoring.history(_find(username, number), points=args["points"])


@blp.route(SESSION + "/bound", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(BoundIn)
@blp.response(200, AcceptedOut)
@token_required(session_scope=True)
def bound(payload, username: str, number: int):
    """The SDK says what the program bound: with `save`, the platform may ask it to
    checkpoint (SIGUSR1) before stopping it."""
    session = _find(username, number, change=True)
    session.saves_on_signal = payload["save"]
    db.session.commit()
    return {"accepted": 1}


@blp.route(SESSION + "/checkpoints", methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, CheckpointOut(many=True))
@token_required(session_scope=True)
def list_checkpoints(username: str, number: int):
    """The checkpoints a session saved."""
    session = _find(username, number)
    return [
        checkpoints.checkpoint_dict(c, scalars=True) for c in checkpoints.list_checkpoints(session)
    ]


@blp.route(SESSION + "/checkpoints/<name>", methods=["PUT"])
@blp.doc(
    security=BEARER,
    requestBody={
        "required": True,
        "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
    },
)
@blp.response(201, CheckpointOut)
@token_required(session_scope=True)
def save_checkpoint(username: str, number: int, name: str):
    """Store a checkpoint (a gzipped tar of the folder `save` wrote)."""
    session = _find(username, number, change=True)
    checkpoint = checkpoints.save_checkpoint(
        session,
        name,
        request.stream,
        artifact_store(),
        max_bytes=current_app.config["MAX_CHECKPOINT_BYTES"],
    )
    return checkpoints.checkpoint_dict(checkpoint)


@blp.route(SESSION + "/checkpoints/<name>", methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, description="the checkpoint as a gzipped tar")
@token_required(session_scope=True)
def download_checkpoint(username: str, number: int, name: str):
    """Download one checkpoint. Sessions load any they may read (`sdk.load`); people
    not those of a session that mounts a sessions-only dataset of someone else's."""
    session = _find(username, number)
    if g.scope_session_id is None:
        checkpoint = checkpoints.for_download(g.user, session, name)
    else:  # inside the platform: a session loading it
        checkpoint = checkpoints.find_checkpoint(session, name)
    return send_file(
        artifact_store().path(checkpoint.digest),
        mimetype="application/gzip",
        as_attachment=True,
        download_name=f"{name}.tar.gz",
    )


# Predictions: `podium infer`, and the replicas of `podium serve` --------------------

BINARY_BODY = {
    "required": True,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


def _own_session(username: str, number: int) -> Session:
    """A route for the session's own program only: its session token, nobody else's."""
    session = _find(username, number, change=True)
    if g.scope_session_id != session.id:
        raise Forbidden("only the session's own program calls this")
    return session


@blp.route(SESSION + "/infer", methods=["POST"])
@blp.doc(security=BEARER, requestBody=BINARY_BODY)
@blp.arguments(InferArgs, location="query")
@blp.response(201, SessionOut)
@token_required()
def infer(args, username: str, number: int):
    """Predict the file sent as the body with this session's checkpoint (its last by
    default), in a session of your own that runs its bound `infer`; its predictions at
    GET .../predictions once it completed."""
    source = _find(username, number)
    digest, _size = artifact_store().put(
        request.stream, max_bytes=current_app.config["INFER_MAX_INPUT_BYTES"]
    )
    session = serving.infer(g.user, source, checkpoint=args["checkpoint"], input_digest=digest)
    service.wake(redis_connection())
    return service.session_dict(session)


@blp.route(SESSION + "/input", methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, description="the input file of an infer session")
@token_required(session_scope=True)
def download_input(username: str, number: int):
    """The file an infer session predicts (its program, or its owner)."""
    session = _find(username, number)
    if not session.input_digest:
        raise NotFound(f"{session.ident} has no input")
    return send_file(
        artifact_store().path(session.input_digest), as_attachment=True, download_name="input"
    )


@blp.route(SESSION + "/predictions", methods=["PUT"])
@blp.doc(security=BEARER, requestBody=BINARY_BODY)
@blp.response(201, AcceptedOut)
@token_required(session_scope=True)
def upload_predictions(username: str, number: int):
    """An infer session's predictions (its own program only)."""
    session = _own_session(username, number)
    if session.mode != serving.INFER:
        raise Conflict(f"{session.ident} is not an infer session")
    digest, size = artifact_store().put(
        request.stream, max_bytes=current_app.config["INFER_MAX_INPUT_BYTES"]
    )
    session.predictions_digest = digest
    db.session.commit()
    return {"accepted": size}


@blp.route(SESSION + "/predictions", methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, description="the predictions of an infer session, as its infer wrote them")
@token_required()
def download_predictions(username: str, number: int):
    """What an infer session predicted (a CSV: id, prediction)."""
    session = _find(username, number)
    if not session.predictions_digest:
        raise NotFound(f"{session.ident} has no predictions ({session.status})")
    return send_file(
        artifact_store().path(session.predictions_digest),
        mimetype="text/csv",
        as_attachment=True,
        download_name="predictions.csv",
    )


@blp.route(SESSION + "/serve/next", methods=["GET"])
@blp.doc(security=BEARER)
@blp.arguments(ServeNextArgs, location="query")
@blp.response(200, ServeNextOut)
@token_required(session_scope=True)
def serve_next(args, username: str, number: int):
    """A serving replica's long poll for the requests to answer (its own program only)."""
    session = _own_session(username, number)
    return serving.next_requests(session, redis_connection(), args["wait"], redis_waits())


@blp.route(SESSION + "/serve/replies", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ServeRepliesIn)
@blp.response(200, AcceptedOut)
@token_required(session_scope=True)
def serve_replies(payload, username: str, number: int):
    """A serving replica's answers (its own program only)."""
    session = _own_session(username, number)
    return {"accepted": serving.reply(session, payload["replies"], redis_connection())}
