"""Session state changes that several processes make: start and end.

Each is a conditional update from the states it may leave, checked by its row count:
the portal, the scheduler and the node agents change sessions concurrently, and a
session stopped by its owner while the scheduler places it, or reported completed while
a heartbeat declares it lost, must end in exactly one state.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import CursorResult, delete, update

from portal.extensions import db
from portal.models import ACTIVE_STATUSES, Allocation, Session, SessionKind, SessionStatus
from portal.services import alerts, credits, monitoring
from portal.services.auth import revoke_session_tokens
from portal.services.competitions import grading
from portal.timeutil import utcnow


def transition(session: Session, leaving: set[SessionStatus], **values) -> bool:
    """Set `values` on the session if it is in one of `leaving`; True if it was."""
    result = cast(
        CursorResult,
        db.session.execute(
            update(Session)
            .where(Session.id == session.id, Session.status.in_([s.value for s in leaving]))
            .values(**values)
            .execution_options(synchronize_session=False)
        ),
    )
    return result.rowcount == 1


def mark_running(session: Session) -> bool:
    moved = transition(
        session,
        {SessionStatus.SCHEDULED},
        status=SessionStatus.RUNNING.value,
        status_reason="",
        started_at=utcnow(),
    )
    db.session.commit()
    db.session.refresh(session)
    return moved


def finish(
    session: Session, status: SessionStatus, reason: str = "", exit_code: int | None = None
) -> bool:
    """Move an active session to a final state, once; release what it held and charge
    whoever pays for it for the rest of its run, and tell its owner when it needs them
    (`alerts.session_ended`). False if it had ended already."""
    ended_at = utcnow()
    if not transition(
        session,
        set(ACTIVE_STATUSES),
        status=status.value,
        status_reason=reason,
        exit_code=exit_code,
        ended_at=ended_at,
    ):
        db.session.rollback()
        db.session.refresh(session)
        return False
    db.session.refresh(session)
    credits.charge_until(session, ended_at)
    monitoring.session_ended(session)
    alerts.session_ended(session)
    db.session.execute(delete(Allocation).where(Allocation.session_id == session.id))
    revoke_session_tokens(session.id)
    db.session.commit()
    db.session.expire(session.user)
    # Reproductions start sessions (sessions → nodes → lifecycle): imported when used.
    from portal.services.competitions import reproductions

    if session.kind == SessionKind.GRADING.value:
        grading.grading_ended(session)
        reproductions.grading_ended(session)
    elif session.kind == SessionKind.REPRODUCTION.value:
        reproductions.training_ended(session)
    return True
