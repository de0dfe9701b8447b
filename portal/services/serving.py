"""Models served over REST (`podium serve`) and predictions of a file (`podium infer`).

A server runs `replicas` sessions of its owner, forks of the served session with its
checkpoint, in serve mode: at `sdk.bind` each loads the checkpoint once and then takes
prediction requests from the portal, answering each with the bound `infer`. The
replicas pull over HTTP (`next_requests`, a long poll with their own session token), so
a replica needs nothing but the portal it already talks to: no port is opened on its
node, and a sandboxed container stays as closed as any session's. A request
(`predict`) waits in the server's Redis queue for a replica and then for its reply, up
to the server's timeout; callers get a clear 503 while no replica is ready. The leading
scheduler's housekeeping (`advance_all`) restarts a replica that ended, and gives up on
a server whose replicas keep failing before any was ever ready.

`infer` runs one session in infer mode: it reads the uploaded input file, predicts it
with the checkpoint, uploads the predictions and ends.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal import keys
from portal.errors import ApiError, Conflict, NotFound
from portal.extensions import db
from portal.models import (
    Checkpoint,
    Server,
    ServerStatus,
    Session,
    User,
)
from portal.services import sessions as session_service
from portal.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
MAX_REPLICAS = 8
# A replica that has not asked for requests for this long is not ready.
READY_SECONDS = 15.0
# Replicas that ended without ever being ready, none of the server's ever ready, before
# the server gives up (its code binds no infer, or cannot load the checkpoint).
FAILURES_BEFORE_GIVING_UP = 4
# Requests a replica takes at once, and how long an unanswered reply is kept.
BATCH = 16
REPLY_SECONDS = 60
LATENCIES_KEPT = 1000
SERVE, INFER, TRAIN = "serve", "infer", "train"


class NotReady(ApiError):
    status = 503

    def __init__(self, message: str):
        super().__init__(message, code="not_ready")


class TimedOut(ApiError):
    status = 504

    def __init__(self, message: str):
        super().__init__(message, code="timeout")


def _checkpoint(source: Session, name: str | None) -> str:
    """The named checkpoint of `source`, or its last."""
    query = select(Checkpoint.name).where(Checkpoint.session_id == source.id)
    if name is not None:
        if db.session.scalar(query.where(Checkpoint.name == name)) is None:
            raise NotFound(f"session {source.ident} has no checkpoint {name!r}")
        return name
    last = db.session.scalar(
        query.order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc()).limit(1)
    )
    if last is None:
        raise Conflict(f"session {source.ident} saved no checkpoint")
    return last


def start(
    viewer: User,
    source: Session,
    *,
    checkpoint: str | None,
    replicas: int = 1,
    gpus: float = 0,
    name: str | None = None,
    timeout_s: float = 30.0,
) -> Server:
    """A running server of `viewer` for `source`'s checkpoint (the last by default), its
    replicas pending for the scheduler."""
    if source.mode != TRAIN:
        raise Conflict(f"{source.ident} {source.mode}s: serve the training session it came from")
    if not 1 <= replicas <= MAX_REPLICAS:
        raise ApiError(f"replicas: 1 to {MAX_REPLICAS}", code="invalid_input")
    if not 1 <= timeout_s <= 300:
        raise ApiError("timeout: 1 to 300 seconds", code="invalid_input")
    saved = _checkpoint(source, checkpoint)
    if name is None:
        name = _free_name(f"{viewer.username}-{source.ident_number}".lower())
    if not NAME.fullmatch(name):
        raise ApiError(
            "a server's name: lower-case letters, digits and dashes, at most 63",
            code="invalid_input",
        )
    whole = int(gpus) if gpus >= 1 else 0
    server = Server(
        name=name,
        user_id=viewer.id,
        source=source.ident,
        source_session_id=source.id,
        checkpoint=saved,
        replicas=replicas,
        gpus=whole,
        gpu_milli=round(gpus * 1000) if gpus and not whole else 0,
        timeout_s=timeout_s,
        status=ServerStatus.RUNNING.value,
        status_reason="starting its replicas",
    )
    db.session.add(server)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"a server is called {name} already: choose another --name") from None
    for _ in range(replicas):
        _start_replica(server, source)
    db.session.commit()
    return server


def _free_name(base: str) -> str:
    taken = set(db.session.scalars(select(Server.name).where(Server.name.startswith(base))))
    if base not in taken:
        return base
    return next(f"{base}-{n}" for n in range(2, 10_000) if f"{base}-{n}" not in taken)


def _start_replica(server: Server, source: Session) -> Session:
    replica = session_service.fork(
        server.user,
        source,
        args=None,
        checkpoint=server.checkpoint,
        store=None,
        commit=False,
        gpus=server.gpus,
        gpu_milli=server.gpu_milli,
    )
    replica.mode = SERVE
    replica.server_id = server.id
    replica.memo = f"serves {server.name} ({source.ident} at checkpoint {server.checkpoint})"
    return replica


def find(viewer: User, name: str, *, change: bool = False) -> Server:
    """The server, if `viewer` may see it (its owner, an administrator, the owner's
    teammates); 404 otherwise. With `change`: its owner and administrators."""
    server = db.session.scalar(select(Server).where(Server.name == name))
    if server is None:
        raise NotFound(f"no server {name}")
    session_service.check_visible(viewer, server.user, f"server {name}", change=change)
    return server


def listing(viewer: User, *, everyone: bool = False) -> list[Server]:
    query = select(Server).order_by(Server.id.desc())
    if not (everyone and viewer.is_admin):
        query = query.where(Server.user_id == viewer.id)
    return list(db.session.scalars(query.limit(200)))


def replicas(server: Server) -> list[Session]:
    return list(
        db.session.scalars(
            select(Session).where(Session.server_id == server.id).order_by(Session.id)
        )
    )


def stop(server: Server, redis=None, reason: str = "") -> Server:
    if server.status != ServerStatus.RUNNING.value:
        raise Conflict(f"server {server.name} has already ended ({server.status})")
    _end(server, ServerStatus.STOPPED, reason or "stopped by its owner")
    db.session.commit()
    for replica in replicas(server):
        if replica.state.is_active:
            session_service.request_stop(replica, redis, reason=f"{server.name} stopped")
    if redis is not None:
        try:
            redis.delete(keys.serve_queue(server.id), keys.serve_ready(server.id))
        except RedisError:
            log.warning("could not clear %s's queue", server.name, exc_info=True)
    return server


def _end(server: Server, status: ServerStatus, reason: str) -> None:
    server.status, server.status_reason, server.ended_at = status.value, reason, utcnow()


def advance_all(redis=None) -> int:
    """Each running server's replicas kept at their number: one that ended is replaced
    (a crash restarts it); a server whose replicas keep failing before any was ready
    fails with the last one's reason. Returns how many replicas started."""
    started = 0
    for server in db.session.scalars(
        select(Server).where(Server.status == ServerStatus.RUNNING.value)
    ).all():
        try:
            started += _advance(server, redis)
        except Exception:
            log.exception("keeping server %s's replicas failed", server.name)
            db.session.rollback()
    return started


def _advance(server: Server, redis) -> int:
    found = replicas(server)
    active = [r for r in found if r.state.is_active]
    ended = [r for r in found if not r.state.is_active]
    if redis is not None and ended:
        try:
            redis.hdel(keys.serve_ready(server.id), *[str(r.id) for r in ended])
        except RedisError:
            log.warning("could not forget %s's ended replicas", server.name, exc_info=True)
    if len(active) >= server.replicas:
        if server.status_reason.startswith("starting") and any(r.served_since for r in active):
            server.status_reason = "serving"
            db.session.commit()
        return 0
    never_ready = [r for r in ended if r.served_since is None]
    if not any(r.served_since for r in found) and len(never_ready) >= FAILURES_BEFORE_GIVING_UP:
        last = max(never_ready, key=lambda r: r.ended_at or r.created_at)
        _end(
            server,
            ServerStatus.FAILED,
            f"its replicas ended {len(never_ready)} times before any was ready; the last: "
            f"{last.ident} {last.status}: {last.status_reason}",
        )
        for replica in active:
            session_service.request_stop(replica, redis, reason=f"{server.name} failed")
        db.session.commit()
        return 0
    source = (
        db.session.get(Session, server.source_session_id)
        if server.source_session_id is not None
        else None
    )
    if source is None:
        _end(server, ServerStatus.FAILED, f"{server.source} was removed: nothing to serve")
        db.session.commit()
        return 0
    missing = server.replicas - len(active)
    for _ in range(missing):
        _start_replica(server, source)
    if ended:
        server.restarts += missing
        last = max(ended, key=lambda r: r.ended_at or r.created_at)
        server.status_reason = (
            f"restarted a replica: {last.ident} {last.status}: {last.status_reason}".strip()
        )
    db.session.commit()
    if redis is not None:
        session_service.wake(redis)
    return missing


# Predictions -------------------------------------------------------------------------


def _invalid(message: str) -> ApiError:
    return ApiError(message, code="invalid_input")


def check_body(body: Any) -> dict[str, Any]:
    """A prediction request: `{"csv": "id,x1,...\\n..."}` (the file `infer` reads), or
    `{"rows": [[id, x1, ...], ...]}` (the same as rows)."""
    if not isinstance(body, dict):
        raise ApiError(
            'the body is a JSON object: {"rows": [[id, x1, ...], ...]} or {"csv": "..."}',
            code="invalid_input",
        )
    if "csv" in body:
        if not isinstance(body["csv"], str) or not body["csv"].strip():
            raise ApiError("csv: the text of a CSV file, its header first", code="invalid_input")
        return {"csv": body["csv"]}
    rows = body.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ApiError("give rows (a list of [id, x1, ...]) or csv", code="invalid_input")
    width = None
    for index, row in enumerate(rows):
        if not isinstance(row, list) or not row:
            raise ApiError(f"rows[{index}] is a list: [id, x1, ...]", code="invalid_input")
        if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in row):
            raise ApiError(f"rows[{index}] holds strings and numbers only", code="invalid_input")
        if width is not None and len(row) != width:
            raise ApiError(
                f"rows[{index}] has {len(row)} values, the first {width}", code="invalid_input"
            )
        width = len(row)
    return {"rows": rows}


def ready_count(server: Server, redis) -> int:
    now = time.time()
    try:
        seen = redis.hgetall(keys.serve_ready(server.id))
    except RedisError:
        return 0
    return sum(1 for at in seen.values() if now - float(at) < READY_SECONDS)


def predict(server: Server, body: dict[str, Any], redis, waits=None) -> Any:
    """The predictions of one request, from a ready replica, within the server's
    timeout. `waits`: the Redis connection to block on (one without a socket timeout
    shorter than the wait); `redis` by default."""
    if server.status != ServerStatus.RUNNING.value:
        raise NotReady(f"{server.name} is {server.status}: {server.status_reason}")
    stats = keys.serve_stats(server.id)
    if not ready_count(server, redis):
        redis.hincrby(stats, "refused", 1)
        raise NotReady(f"no replica of {server.name} is ready yet: try again shortly")
    request_id = uuid.uuid4().hex
    timeout = server.timeout_s
    started = time.monotonic()
    redis.lpush(
        keys.serve_queue(server.id),
        json.dumps({"id": request_id, "body": body, "deadline": time.time() + timeout}),
    )
    redis.hincrby(stats, "requests", 1)
    server_name = server.name
    db.session.commit()  # ends the transaction: no connection held while waiting
    answer = (waits or redis).blpop([keys.serve_reply(request_id)], timeout=max(1, round(timeout)))
    if answer is None:
        redis.hincrby(stats, "timeouts", 1)
        raise TimedOut(f"no replica of {server_name} answered within {timeout:g} s")
    reply = json.loads(answer[1])
    if "error" in reply:
        redis.hincrby(stats, "errors", 1)
        raise ApiError(
            f"the model's infer failed: {reply['error']}", code="infer_failed", status=422
        )
    elapsed_ms = (time.monotonic() - started) * 1000
    with redis.pipeline() as pipe:
        pipe.hincrby(stats, "answered", 1)
        pipe.lpush(keys.serve_latencies(server.id), round(elapsed_ms, 2))
        pipe.ltrim(keys.serve_latencies(server.id), 0, LATENCIES_KEPT - 1)
        pipe.execute()
    return reply.get("predictions")


def _replica_of(session: Session) -> Server:
    if session.mode != SERVE or session.server_id is None:
        raise Conflict(f"{session.ident} serves nothing")
    server = db.session.get(Server, session.server_id)
    if server is None:
        raise Conflict(f"{session.ident} serves nothing")
    return server


def next_requests(session: Session, redis, wait: float = 10.0, waits=None) -> dict[str, Any]:
    """A replica's long poll: the requests waiting (up to BATCH), after up to `wait`
    seconds; `stop` when its server ended. Its first poll makes it ready. Requests
    taken for a replica that ended meanwhile (killed while it waited) go back to the
    queue for another."""
    server = _replica_of(session)
    if server.status != ServerStatus.RUNNING.value or not session.state.is_active:
        return {"requests": [], "stop": True}
    if session.served_since is None:
        session.served_since = utcnow()
        db.session.commit()
    server_id = server.id
    redis.hset(keys.serve_ready(server_id), str(session.id), time.time())
    db.session.commit()  # no connection held while waiting
    taken = []
    first = (waits or redis).brpop([keys.serve_queue(server_id)], timeout=max(1, round(wait)))
    if first is not None:
        taken.append(first[1])
        for _ in range(BATCH - 1):
            more = redis.rpop(keys.serve_queue(server_id))
            if more is None:
                break
            taken.append(more)
    db.session.refresh(session)
    if not session.state.is_active:
        if taken:
            redis.rpush(keys.serve_queue(server_id), *reversed(taken))
        redis.hdel(keys.serve_ready(server_id), str(session.id))
        return {"requests": [], "stop": True}
    now = time.time()
    requests = []
    for raw in taken:
        item = json.loads(raw)
        if item.get("deadline", now) >= now:  # its caller still waits
            requests.append({"id": item["id"], "body": item["body"]})
    return {"requests": requests, "stop": False}


def reply(session: Session, replies: Any, redis) -> int:
    """A replica's answers: each request's predictions, or the error its infer raised."""
    _replica_of(session)
    if not isinstance(replies, list):
        raise ApiError("replies: a list of {id, predictions} or {id, error}", code="invalid_input")
    with redis.pipeline() as pipe:
        for index, item in enumerate(replies):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise ApiError(f"replies[{index}] needs an id", code="invalid_input")
            if not re.fullmatch(r"[0-9a-f]{32}", item["id"]):
                raise ApiError(f"replies[{index}]: no such request", code="invalid_input")
            answer = (
                {"error": str(item["error"])[:2000]}
                if "error" in item
                else {"predictions": item.get("predictions")}
            )
            pipe.lpush(keys.serve_reply(item["id"]), json.dumps(answer))
            pipe.expire(keys.serve_reply(item["id"]), REPLY_SECONDS)
        pipe.execute()
    return len(replies)


def stats(server: Server, redis) -> dict[str, Any]:
    found: dict[str, Any] = {
        "requests": 0,
        "answered": 0,
        "errors": 0,
        "timeouts": 0,
        "refused": 0,
        "latency_ms_p50": None,
        "latency_ms_p99": None,
        "ready_replicas": 0,
    }
    if redis is None:
        return found
    try:
        counters = redis.hgetall(keys.serve_stats(server.id))
        latencies = sorted(float(v) for v in redis.lrange(keys.serve_latencies(server.id), 0, -1))
    except RedisError:
        return found
    for name, value in counters.items():
        found[name.decode() if isinstance(name, bytes) else name] = int(value)
    if latencies:
        found["latency_ms_p50"] = latencies[len(latencies) // 2]
        found["latency_ms_p99"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    found["ready_replicas"] = ready_count(server, redis)
    return found


def server_dict(server: Server, redis=None, *, details: bool = True) -> dict[str, Any]:
    found: dict[str, Any] = {
        "name": server.name,
        "user": server.user.username,
        "source": server.source,
        "checkpoint": server.checkpoint,
        "replicas": server.replicas,
        "gpus": server.gpus or server.gpu_milli / 1000,
        "timeout_s": server.timeout_s,
        "status": server.status,
        "status_reason": server.status_reason,
        "restarts": server.restarts,
        "predict": f"/api/v1/serve/{server.name}/predict",
        "created_at": isoformat(server.created_at),
        "ended_at": isoformat(server.ended_at),
    }
    if details:
        found["stats"] = stats(server, redis)
        found["sessions"] = [
            {"id": r.ident, "status": r.status, "ready": r.served_since is not None}
            for r in replicas(server)
        ]
    return found


# Predictions of a file ---------------------------------------------------------------


def infer(viewer: User, source: Session, *, checkpoint: str | None, input_digest: str) -> Session:
    """A session that predicts the uploaded input file with `source`'s checkpoint (the
    last by default), uploads the predictions and ends."""
    if source.mode != TRAIN:
        raise Conflict(f"{source.ident} {source.mode}s: use the training session it came from")
    saved = _checkpoint(source, checkpoint)
    session = session_service.fork(
        viewer, source, args=None, checkpoint=saved, store=None, commit=False
    )
    session.mode = INFER
    session.input_digest = input_digest
    session.memo = f"predicts an input with {source.ident} at checkpoint {saved}"
    db.session.commit()
    return session
