"""Session state changes that several services make: start and end."""

from __future__ import annotations

from sqlalchemy import delete

from portal.extensions import db
from portal.models import Allocation, Session, SessionStatus
from portal.services.auth import revoke_session_tokens
from portal.timeutil import utcnow


def mark_running(session: Session) -> None:
    if session.state is SessionStatus.SCHEDULED:
        session.status = SessionStatus.RUNNING.value
        session.status_reason = ""
        session.started_at = utcnow()
        db.session.commit()


def finish(
    session: Session, status: SessionStatus, reason: str = "", exit_code: int | None = None
) -> bool:
    """Move an active session to a final state, once; release what it held and charge
    its owner's credit for the GPU-hours it ran."""
    if session.state.is_final:
        return False
    session.status = status.value
    session.status_reason = reason
    session.exit_code = exit_code
    session.ended_at = utcnow()
    if session.gpus and session.started_at is not None:
        hours = (session.ended_at - session.started_at).total_seconds() / 3600
        session.user.credit_gpu_hours -= session.gpus * hours
    db.session.execute(delete(Allocation).where(Allocation.session_id == session.id))
    revoke_session_tokens(session.id)
    db.session.commit()
    return True
