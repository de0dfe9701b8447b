"""Migration on drain: `podium node drain NODE --migrate` moves what runs on a node to
other nodes, each session from a checkpoint it saves when asked.

Draining with `migrate` asks every running training session on the node whose program
bound `save` to checkpoint now (SIGUSR1; the SDK saves `signal-STEP`) and marks it
`migrating_since`. The scheduler's housekeeping then moves each one (`advance`): once
it has saved a checkpoint since it was asked, a linked session (forked from it, with
the same code, arguments, dataset versions, environment and resources) is made to start
from that checkpoint on another node, the drained one taking nothing new, and the
session is stopped, saying where it went. A session that bound no `save`, or saves nothing within
`MIGRATION_GRACE_SECONDS`, is left to finish where it is; undraining the node calls
the moves off.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import cast

from flask import current_app
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import selectinload

from portal.extensions import db
from portal.models import Checkpoint, Node, Session, SessionKind, SessionStatus
from portal.timeutil import utcnow

log = logging.getLogger(__name__)


def start(node: Node, redis, now: datetime | None = None) -> dict[str, list[str]]:
    """Ask the node's running training sessions that bound `save` to checkpoint; the
    others placed there (sessions the platform runs, those that bound nothing, those
    placed but not started yet) are left to finish. Commits; says which are which."""
    from portal.services import sessions as session_service

    now = now or utcnow()
    moving, staying = [], []
    for session in db.session.scalars(
        select(Session)
        .options(selectinload(Session.node), selectinload(Session.user))
        .where(
            Session.node_id == node.id,
            Session.status.in_([SessionStatus.RUNNING.value, SessionStatus.SCHEDULED.value]),
        )
        .order_by(Session.id)
    ):
        if session.migrating_since is not None:
            moving.append(session.ident)
        elif (
            session.state is SessionStatus.RUNNING
            and session.kind == SessionKind.TRAINING.value
            and session.saves_on_signal
            and not session.stop_requested
        ):
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
        moved = _move(session, asked, saved.name, redis)
        if moved is not None:
            started.append(moved)
    return started


def _move(session: Session, asked: datetime, checkpoint: str, redis) -> Session | None:
    """Fork the session from its checkpoint and stop it, once: the row is claimed first
    (a conditional update from the `migrating_since` it was read with), so that two
    housekeepers, or a retry after a failed commit, never move it twice. A fork the
    platform refuses (the owner may no longer read a dataset it mounts) leaves it to
    finish where it is, and its owner is told."""
    from portal.errors import ApiError, Conflict
    from portal.services import alerts
    from portal.services import sessions as session_service

    claimed = db.session.execute(
        update(Session)
        .where(
            Session.id == session.id,
            Session.migrating_since == asked,
            Session.status == SessionStatus.RUNNING.value,
        )
        .values(migrating_since=None)
    )
    db.session.commit()
    if cast(CursorResult, claimed).rowcount != 1:
        return None
    node = session.node.name if session.node else "its node"
    try:
        moved = session_service.fork(
            session.user, session, args=None, checkpoint=checkpoint, store=None, redis=redis
        )
    except ApiError as exc:
        db.session.rollback()
        log.warning("%s cannot move off node %s: %s", session.ident, node, exc)
        alerts.notify(
            session.user,
            "session_not_migrated",
            f"Session {session.ident} stays on node {node}",
            f"Node {node} is being drained, and {session.ident} could not go on elsewhere"
            f" ({exc}). It finishes where it is.",
            alerts.session_link(session),
        )
        db.session.commit()
        return None
    moved.memo = (
        f"migrated from {session.ident} (node {node} drained), from checkpoint {checkpoint}"
    )
    alerts.notify(
        session.user,
        "session_migrated",
        f"Session {session.ident} moved to {moved.ident}",
        f"Node {node} is being drained. {session.ident} saved checkpoint {checkpoint}"
        f" and goes on from it as {moved.ident}, on another node.",
        alerts.session_link(moved),
    )
    db.session.commit()
    try:
        session_service.request_stop(
            session,
            redis=redis,
            reason=f"migrated: node {node} is drained; it goes on as {moved.ident}",
        )
    except Conflict:  # it ended meanwhile: what it ended with stands, and the copy goes
        session_service.request_stop(
            moved, redis=redis, reason=f"{session.ident} ended before it could move"
        )
        return None
    log.info("%s moves off node %s as %s", session.ident, node, moved.ident)
    return moved
