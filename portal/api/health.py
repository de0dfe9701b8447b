from __future__ import annotations

import logging

from flask import current_app
from flask_smorest import Blueprint
from redis.exceptions import RedisError
from rq import Worker
from sqlalchemy import text

from portal import keys
from portal.api.schemas import HealthOut
from portal.extensions import db
from portal.services.nodes import live_nodes

log = logging.getLogger(__name__)

PREFIX = ""
blp = Blueprint("health", __name__, description="Is every part of the platform up?")


@blp.route("/health")
@blp.response(200, HealthOut)
@blp.alt_response(503, schema=HealthOut, description="some part is down")
def health():
    """Each part's state; 200 only when every part is up."""
    parts: dict[str, dict] = {}
    try:
        db.session.execute(text("SELECT 1"))
        parts["database"] = {"ok": True, "dialect": db.engine.dialect.name}
    except Exception:  # any driver error means the database is down
        # Logged for the operator, never answered: a driver's error text may name the
        # database's host, user or URL, and this answer is public.
        log.exception("health: the database does not answer")
        parts["database"] = {"ok": False}
    redis = current_app.extensions.get("redis")
    try:
        if redis is None:
            raise RedisError("REDIS_URL is not configured")
        redis.ping()
        parts["redis"] = {"ok": True}
        parts["scheduler"] = {"ok": bool(redis.exists(keys.SCHEDULER_HEARTBEAT))}
        graders = [w for w in Worker.all(connection=redis) if keys.GRADER_QUEUE in w.queue_names()]
        parts["grader"] = {"ok": bool(graders), "workers": len(graders)}
    except RedisError:
        log.exception("health: Redis does not answer")
        for part in ("redis", "scheduler", "grader"):
            parts.setdefault(part, {"ok": False})
    if parts["database"]["ok"]:
        ready = live_nodes()
        parts["nodes"] = {"ok": bool(ready), "ready": [n.name for n in ready]}
    else:
        parts["nodes"] = {"ok": False}
    healthy = all(part["ok"] for part in parts.values())
    return {"status": "ok" if healthy else "degraded", "parts": parts}, 200 if healthy else 503
