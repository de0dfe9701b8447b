"""Credit: a balance per user, and a ledger of every grant, charge and refund.

Sessions are charged while they run, an interval at a time (`charge_running`, which the
scheduler's housekeeping calls every `CREDIT_CHARGE_SECONDS`), and for the rest of their
last interval when they end (`charge_until`). The cost of an hour is its GPUs (a share
of one GPU as its fraction: `Session.gpu_amount`) times `CREDIT_GPU_HOUR` plus its CPUs
times `CREDIT_CPU_HOUR`; a session that costs nothing (CPU-only at a CPU rate of 0, the
default) is never held back or stopped for credit.
A grading session is paid for by its competition's organiser, not by the participant.

Each interval is charged once: the session's `charged_until` moves by a conditional
update from the value it was read at, so the housekeeping and a session ending at the
same moment cannot charge the same time twice. A running session's charges of one hour
go on one ledger line (extended as intervals are charged), so that a week-long session
is 168 lines, not ten thousand.

When a balance reaches zero (`enforce`), the owner's running sessions that cost credit
are told to checkpoint (those whose program bound `save`: the SDK saves on SIGUSR1),
given `CREDIT_GRACE_SECONDS`, then stopped with the reason "out of credit"; nothing new
of theirs that costs credit starts (the scheduler asks `refusal`). Credit granted during
the grace period calls the stop off.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from flask import current_app
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import selectinload

from portal.errors import ApiError, NotFound
from portal.extensions import db
from portal.models import (
    Competition,
    CreditEntry,
    EntryKind,
    Reproduction,
    Round,
    Session,
    SessionKind,
    SessionStatus,
    Submission,
    User,
)
from portal.timeutil import utcnow

log = logging.getLogger(__name__)

OUT_OF_CREDIT = "out of credit"
LINE_SPAN = timedelta(hours=1)  # a running session's charges within an hour: one line
MAX_AMOUNT = 1e9


@dataclass(frozen=True)
class Rates:
    gpu_hour: float
    cpu_hour: float

    @classmethod
    def configured(cls) -> Rates:
        config = current_app.config
        return cls(float(config["CREDIT_GPU_HOUR"]), float(config["CREDIT_CPU_HOUR"]))

    def per_hour(self, session: Session) -> float:
        return session.gpu_amount * self.gpu_hour + session.cpus * self.cpu_hour


def payer(session: Session) -> tuple[User, Competition | None]:
    """Who pays for a session: its owner, or for a grading session or a reproduction the
    organiser of the competition it grades or reproduces for."""
    competition = None
    if session.kind in (SessionKind.GRADING.value, SessionKind.REPRODUCTION.value):
        by_competition = select(Competition).join(Round, Round.competition_id == Competition.id)
        competition = db.session.scalar(
            by_competition.join(Submission, Submission.round_id == Round.id).where(
                Submission.grading_session_id == session.id
            )
        ) or db.session.scalar(
            by_competition.join(Submission, Submission.round_id == Round.id)
            .join(Reproduction, Reproduction.submission_id == Submission.id)
            .where(
                or_(
                    Reproduction.training_session_id == session.id,
                    Reproduction.grading_session_id == session.id,
                )
            )
        )
    if competition is not None:
        return competition.organiser, competition
    return session.user, None


def refusal(session: Session, rates: Rates | None = None) -> str | None:
    """Why a pending session may not start for lack of credit, or None."""
    rates = rates or Rates.configured()
    if rates.per_hour(session) <= 0:
        return None
    paying, competition = payer(session)
    if paying.credit > 0:
        return None
    if competition is not None:
        return f"waiting: the grading budget of {competition.slug} is spent"
    return f"{OUT_OF_CREDIT} ({paying.credit:.2f} left): an administrator can grant more"


# Charging ----------------------------------------------------------------------------


def charge_until(session: Session, end: datetime, rates: Rates | None = None) -> float:
    """Charge a session for the time it ran, from where it was charged last to `end`.
    Not committed. Returns the amount charged (0 when another writer charged it)."""
    if session.started_at is None:
        return 0.0
    start = max(session.charged_until or session.started_at, session.started_at)
    if end <= start:
        return 0.0
    moved = cast(
        CursorResult,
        db.session.execute(
            update(Session)
            .where(
                Session.id == session.id,
                Session.charged_until.is_(None)
                if session.charged_until is None
                else Session.charged_until == session.charged_until,
            )
            .values(charged_until=end)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if moved != 1:
        return 0.0
    session.charged_until = end
    rates = rates or Rates.configured()
    hours = (end - start).total_seconds() / 3600
    gpu_hours, cpu_hours = session.gpu_amount * hours, session.cpus * hours
    amount = gpu_hours * rates.gpu_hour + cpu_hours * rates.cpu_hour
    if amount <= 0:
        return 0.0
    paying, competition = payer(session)
    balance = _add(paying, -amount)
    line = db.session.scalar(
        select(CreditEntry)
        .where(
            CreditEntry.session_id == session.id,
            CreditEntry.kind == EntryKind.CHARGE.value,
            CreditEntry.period_start > end - LINE_SPAN,
        )
        .order_by(CreditEntry.id.desc())
        .limit(1)
    )
    if line is not None and line.user_id == paying.id:
        line.amount -= amount
        line.gpu_hours += gpu_hours
        line.cpu_hours += cpu_hours
        line.period_end = end
        line.balance_after = balance
    else:
        db.session.add(
            CreditEntry(
                user_id=paying.id,
                kind=EntryKind.CHARGE.value,
                amount=-amount,
                gpu_hours=gpu_hours,
                cpu_hours=cpu_hours,
                balance_after=balance,
                session_id=session.id,
                session_ident=session.ident,
                competition_id=competition.id if competition else None,
                reason=(
                    f"grading {session.ident} for {competition.slug}"
                    if competition
                    else f"running {session.ident}"
                ),
                period_start=start,
                period_end=end,
                created_at=end,
            )
        )
    return amount


def _add(user: User, amount: float) -> float:
    """Change a balance in the database (not from a stale copy); the new balance."""
    db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(credit=User.credit + amount)
        .execution_options(synchronize_session=False)
    )
    balance = float(db.session.scalar(select(User.credit).where(User.id == user.id)) or 0.0)
    user.credit = balance
    return balance


def charge_running(now: datetime | None = None) -> int:
    """Charge every running session up to now, each in a transaction of its own: like
    `finish`, it locks a session, then its payer, and holds no other session meanwhile
    (two sessions of one payer, charged here and ended there, would deadlock). Returns
    how many were charged."""
    now = now or utcnow()
    rates = Rates.configured()
    running = db.session.scalars(
        select(Session)
        .options(selectinload(Session.user))
        .where(Session.status == SessionStatus.RUNNING.value)
    ).all()
    db.session.commit()
    charged = 0
    for session in running:
        try:
            charged += int(charge_until(session, now, rates) > 0)
            db.session.commit()
        except OperationalError:  # a lock it waited on too long: charged next time
            db.session.rollback()
            log.warning("charging %s was put off", session.ident, exc_info=True)
    return charged


# Grants and refunds ------------------------------------------------------------------


def _checked_amount(amount: Any, what: str) -> float:
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int | float)
        or not 0 < amount <= MAX_AMOUNT  # before isfinite: 10**400 overflows a float
        or not math.isfinite(amount)
    ):
        raise ApiError(
            f"a {what} is a positive number of credits (at most {MAX_AMOUNT:g}), not {amount!r}",
            code="invalid_input",
            status=422,
        )
    return float(amount)


def grant(user: User, amount: Any, *, actor: User, reason: str = "") -> CreditEntry:
    """An administrator adds credit to a user's balance."""
    return _credit(user, _checked_amount(amount, "grant"), EntryKind.GRANT, actor, reason)


def refund(
    user: User, amount: Any, *, actor: User, reason: str = "", session: Session | None = None
) -> CreditEntry:
    """An administrator gives back credit, for one of the user's sessions or in general."""
    amount = _checked_amount(amount, "refund")
    if session is not None and payer(session)[0].id != user.id:
        raise NotFound(f"{user.username} did not pay for session {session.ident}")
    return _credit(user, amount, EntryKind.REFUND, actor, reason, session)


def _credit(
    user: User,
    amount: float,
    kind: EntryKind,
    actor: User,
    reason: str,
    session: Session | None = None,
) -> CreditEntry:
    if len(reason) > 500:
        raise ApiError("a reason is at most 500 characters", code="invalid_input", status=422)
    entry = CreditEntry(
        user_id=user.id,
        kind=kind.value,
        amount=amount,
        balance_after=_add(user, amount),
        session_id=session.id if session else None,
        session_ident=session.ident if session else "",
        actor_id=actor.id,
        reason=reason.strip() or f"{kind.value} by {actor.username}",
    )
    db.session.add(entry)
    db.session.commit()
    return entry


# Reading -----------------------------------------------------------------------------


def ledger(user: User, *, limit: int = 100, before: int | None = None) -> list[CreditEntry]:
    """A user's ledger, newest first; `before` an entry id, for the next page."""
    query = select(CreditEntry).where(CreditEntry.user_id == user.id)
    if before is not None:
        query = query.where(CreditEntry.id < before)
    return list(db.session.scalars(query.order_by(CreditEntry.id.desc()).limit(limit)))


def entry_dict(entry: CreditEntry, actors: dict[int, str] | None = None) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount": entry.amount,
        "gpu_hours": entry.gpu_hours,
        "cpu_hours": entry.cpu_hours,
        "balance_after": entry.balance_after,
        "session": entry.session_ident or None,
        "reason": entry.reason,
        "by": (actors or {}).get(entry.actor_id) if entry.actor_id else None,
        "created_at": entry.created_at,
        "period_start": entry.period_start,
        "period_end": entry.period_end,
    }


def ledger_dicts(entries: list[CreditEntry]) -> list[dict[str, Any]]:
    ids = {e.actor_id for e in entries if e.actor_id}
    actors = (
        {u.id: u.username for u in db.session.scalars(select(User).where(User.id.in_(ids)))}
        if ids
        else {}
    )
    return [entry_dict(e, actors) for e in entries]


def summary(user: User) -> dict[str, Any]:
    """The balance, the rates, and what the user's running sessions cost an hour."""
    rates = Rates.configured()
    running = db.session.scalars(
        select(Session).where(
            Session.user_id == user.id,
            Session.status == SessionStatus.RUNNING.value,
            Session.kind == SessionKind.TRAINING.value,
        )
    ).all()
    stopping = [s for s in running if s.credit_stop_at is not None]
    return {
        "username": user.username,
        "credit": user.credit,
        "rates": {"gpu_hour": rates.gpu_hour, "cpu_hour": rates.cpu_hour},
        "burn_per_hour": sum(rates.per_hour(s) for s in running),
        "running": len(running),
        "stopping_for_credit": [
            {"session": s.ident, "stops_at": s.credit_stop_at} for s in stopping
        ],
    }


# Enforcement -------------------------------------------------------------------------


def enforce(redis, now: datetime | None = None) -> list[Session]:
    """Out of credit: warn (checkpoint) the owner's running paid sessions, then stop them
    once their grace is over; call it off for those whose owner has credit again.
    Commits; returns the sessions it stopped."""
    from portal.services import alerts
    from portal.services import sessions as session_service  # sessions imports lifecycle

    now = now or utcnow()
    rates = Rates.configured()
    grace = timedelta(seconds=float(current_app.config["CREDIT_GRACE_SECONDS"]))
    running = db.session.scalars(
        select(Session)
        .options(selectinload(Session.user), selectinload(Session.node))
        .where(
            Session.status == SessionStatus.RUNNING.value,
            Session.kind == SessionKind.TRAINING.value,
            or_(Session.credit_stop_at.is_not(None), Session.user.has(User.credit <= 0)),
        )
    ).all()
    stopped = []
    warned: dict[int, list[Session]] = {}
    for session in running:
        if session.user.credit > 0 or rates.per_hour(session) <= 0:
            session.credit_stop_at = None  # granted more meanwhile
            continue
        if session.credit_stop_at is None:
            session.credit_stop_at = now + grace
            warned.setdefault(session.user_id, []).append(session)
            db.session.commit()
            session_service.ask_to_checkpoint(session, redis)
            log.warning(
                "%s is out of credit: %s stops at %s",
                session.user.username,
                session.ident,
                session.credit_stop_at,
            )
        elif now >= session.credit_stop_at and not session.stop_requested:
            session_service.request_stop(session, redis=redis, reason=OUT_OF_CREDIT)
            stopped.append(session)
    for sessions in warned.values():  # one message a user, naming every session
        alerts.credit_warning(sessions, now + grace)
    db.session.commit()
    stopped += _enforce_reproductions(redis, now, rates, grace)
    return stopped


def _enforce_reproductions(redis, now: datetime, rates: Rates, grace: timedelta) -> list[Session]:
    """An organiser's re-runs of submissions stop, after the grace, once the organiser
    who pays for them has no credit (the reproduction then fails, saying so)."""
    from portal.services import sessions as session_service

    stopped = []
    for session in db.session.scalars(
        select(Session).where(
            Session.status == SessionStatus.RUNNING.value,
            Session.kind == SessionKind.REPRODUCTION.value,
        )
    ).all():
        paying, _ = payer(session)
        if paying.credit > 0 or rates.per_hour(session) <= 0:
            session.credit_stop_at = None
        elif session.credit_stop_at is None:
            session.credit_stop_at = now + grace
        elif now >= session.credit_stop_at and not session.stop_requested:
            reason = f"{OUT_OF_CREDIT}: {paying.username}, who pays for it, has none left"
            session_service.request_stop(session, redis=redis, reason=reason)
            stopped.append(session)
        db.session.commit()
    return stopped
