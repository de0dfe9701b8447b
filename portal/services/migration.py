"""Migration on drain: `podium node drain NODE --migrate` moves what runs on a node to
other nodes, each session from a checkpoint it saves when asked.

Draining with `migrate` asks every running training session on the node whose program
bound `save` to checkpoint now (SIGUSR1; the SDK saves `signal-STEP`) and marks it
`migrating_since`. The scheduler's housekeeping then moves each one (`advance`): once
it has saved a checkpoint since it was asked, it is stopped, saying where it went, and
a linked session (forked from it, with the same code, arguments, dataset versions,
environment and resources) starts from that checkpoint on another node, the drained
one taking nothing new. A session that bound no `save`, or saves nothing within
`MIGRATION_GRACE_SECONDS`, is left to finish where it is.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from portal.extensions import db
from portal.models import Checkpoint, Node, Session, SessionKind, SessionStatus
from portal.timeutil import utcnow

log = logging.getLogger(__name__)


def start(node: Node, redis, now: datetime | None = None) -> dict[str, list[str]]:
    """Ask the node's running training sessions that bound `save` to checkpoint; the
    others are left to finish. Commits; says which are which."""
    from portal.services import sessions as session_service

    now = now or utcnow()
    moving, staying = [], []
    for session in db.session.scalars(
        select(Session)
        .options(selectinload(Session.node), selectinload(Session.user))
        .where(
            Session.node_id == node.id,
            Session.status == SessionStatus.RUNNING.value,
            Session.kind == SessionKind.TRAINING.value,
        )
        .order_by(Session.id)
    ):
        if session.migrating_since is not None:
            moving.append(session.ident)
        elif session.saves_on_signal and not session.stop_requested:
            session.migrating_since = now
            db.session.commit()
            session_service.ask_to_checkpoint(session, redis)
            moving.append(session.ident)
            log.info("%s: asked to checkpoint to leave node %s", session.ident, node.name)
        else:
            staying.append(session.ident)
    return {"migrating": moving, "left_to_finish": staying}


def advance(redis, now: datetime | None = None) -> list[Session]:
    """Move each migrating session that has saved a checkpoint since it was asked; leave
    to finish those past the grace, or no longer running. Commits; returns the sessions
    started elsewhere."""
    from portal.services import alerts
    from portal.services import sessions as session_service

    now = now or utcnow()
    grace = timedelta(seconds=float(current_app.config["MIGRATION_GRACE_SECONDS"]))
    started = []
    for session in db.session.scalars(
        select(Session)
        .options(selectinload(Session.node), selectinload(Session.user))
        .where(Session.migrating_since.is_not(None))
        .order_by(Session.id)
    ).all():
        asked = session.migrating_since
        assert asked is not None
        if session.state is not SessionStatus.RUNNING or session.stop_requested:
            session.migrating_since = None
            db.session.commit()
            continue
        saved = db.session.scalar(
            select(Checkpoint)
            .where(Checkpoint.session_id == session.id, Checkpoint.created_at >= asked)
            .order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
            .limit(1)
        )
        if saved is None:
            if now - asked > grace:
                session.migrating_since = None
                db.session.commit()
                log.warning(
                    "%s saved no checkpoint within %s; it finishes where it is",
                    session.ident,
                    grace,
                )
            continue
        node = session.node.name if session.node else "its node"
        moved = session_service.fork(
            session.user, session, args=None, checkpoint=saved.name, store=None, redis=redis
        )
        moved.memo = (
            f"migrated from {session.ident} (node {node} drained), from checkpoint {saved.name}"
        )
        session.migrating_since = None
        alerts.notify(
            session.user,
            "session_migrated",
            f"Session {session.ident} moved to {moved.ident}",
            f"Node {node} is being drained. {session.ident} saved checkpoint {saved.name}"
            f" and goes on from it as {moved.ident}, on another node.",
            alerts.session_link(moved),
        )
        db.session.commit()
        session_service.request_stop(
            session,
            redis=redis,
            reason=f"migrated: node {node} is drained; it goes on as {moved.ident}",
        )
        log.info("%s moves off node %s as %s", session.ident, node, moved.ident)
        started.append(moved)
    return started
