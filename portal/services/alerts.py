"""Telling users what happened to their work: notifications in the portal, and the same
by e-mail where the site sends mail (`SMTP_HOST`) and the user has not turned it off.

A notification is written in the same transaction as the change it reports; its row is
also the mail's outbox (`email_state` pending → sending → sent; back to pending when the
server refuses it, failed after `MAIL_ATTEMPTS` refusals),
which `send_pending` works through from the scheduler's housekeeping, so that a slow or
absent mail server never holds up a request or a state change.

Sessions: an owner is told when a session ends failed, killed (out of memory or over
its time), lost, or stopped for credit; when its credit runs out while it runs; and when
it stalls (no log line and no scalar for its `--stall-minutes`).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update

from portal.errors import NotFound
from portal.extensions import db
from portal.models import (
    LogLine,
    Notification,
    ScalarSeries,
    Session,
    SessionKind,
    SessionStatus,
    User,
)
from portal.timeutil import utcnow

log = logging.getLogger(__name__)

MAIL_ATTEMPTS = 5
PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
# Session endings an owner is told of: the ones that need them to act.
TOLD_ENDINGS = {SessionStatus.FAILED, SessionStatus.KILLED, SessionStatus.LOST}


def mail_enabled() -> bool:
    return bool(current_app.config.get("SMTP_HOST"))


def notify(user: User, kind: str, subject: str, body: str = "", link: str = "") -> Notification:
    """Tell a user something (not committed: it lands with the change it reports)."""
    wants_mail = mail_enabled() and user.email_alerts and bool(user.email)
    notification = Notification(
        user_id=user.id,
        kind=kind,
        subject=subject[:200],
        body=body,
        link=link,
        email_state=PENDING if wants_mail else "",
    )
    db.session.add(notification)
    return notification


def session_link(session: Session) -> str:
    return f"/sessions/{session.ident_owner}/{session.ident_number}"


def session_ended(session: Session) -> Notification | None:
    """Called as a session reaches its final state: tell its owner when it needs them."""
    from portal.services.credits import OUT_OF_CREDIT

    if session.kind != SessionKind.TRAINING.value:
        return None  # a grading session's outcome reaches its submitter as a score
    state = session.state
    out_of_credit = state is SessionStatus.STOPPED and session.status_reason == OUT_OF_CREDIT
    if state not in TOLD_ENDINGS and not out_of_credit:
        return None
    what = "stopped: out of credit" if out_of_credit else state.value
    return notify(
        session.user,
        "session_" + ("out_of_credit" if out_of_credit else state.value),
        f"Session {session.ident} {what}",
        f"Session {session.ident} ({session.entry}) {what}"
        + (f": {session.status_reason}" if session.status_reason and not out_of_credit else ".")
        + _resume_hint(session),
        session_link(session),
    )


def _resume_hint(session: Session) -> str:
    return f"\n\nResume it from its last checkpoint with: podium resume {session.ident}"


def credit_warning(sessions: list[Session], stops_at: datetime) -> Notification:
    """One owner's sessions that stop for lack of credit, in one message."""
    names = ", ".join(s.ident for s in sessions)
    several = len(sessions) > 1
    return notify(
        sessions[0].user,
        "credit_warning",
        f"Out of credit: {names} stop{'' if several else 's'} soon",
        f"Your credit has run out. Session{'s' if several else ''} {names} "
        f"{'were' if several else 'was'} asked to checkpoint (where the code bound "
        f"`save`) and stop{'' if several else 's'} at {stops_at:%Y-%m-%d %H:%M:%S} UTC "
        "unless an administrator grants more.",
        session_link(sessions[0]) if not several else "/credit",
    )


# Stalls ------------------------------------------------------------------------------


def last_activity(session: Session) -> datetime | None:
    """When the session last printed a line or reported a scalar (resource samples,
    which its node sends, are not its activity)."""
    from portal.services.monitoring import PREFIX

    printed = db.session.scalar(
        select(LogLine.created_at)
        .where(LogLine.session_id == session.id)
        .order_by(LogLine.seq.desc())
        .limit(1)
    )
    reported = db.session.scalar(
        select(func.max(ScalarSeries.last_wall)).where(
            ScalarSeries.session_id == session.id, ~ScalarSeries.tag.startswith(PREFIX)
        )
    )
    moments = [m for m in (printed, session.started_at) if m is not None]
    if reported:
        moments.append(datetime.fromtimestamp(float(reported), UTC).replace(tzinfo=None))
    return max(moments) if moments else None


def flag_stalled(now: datetime | None = None) -> list[Session]:
    """Flag the running sessions quiet for longer than their limit, once each (the flag
    is lifted when they speak again); commits. Returns those newly flagged."""
    now = now or utcnow()
    watched = db.session.scalars(
        select(Session).where(
            Session.status == SessionStatus.RUNNING.value, Session.stall_minutes.is_not(None)
        )
    ).all()
    flagged = []
    for session in watched:
        active = last_activity(session) or now
        quiet = now - active
        if quiet >= timedelta(minutes=session.stall_minutes or 0):
            if session.stalled_at is None:
                session.stalled_at = now
                flagged.append(session)
                minutes = int(quiet.total_seconds() // 60)
                notify(
                    session.user,
                    "session_stalled",
                    f"Session {session.ident} has stalled",
                    f"Session {session.ident} has printed nothing and reported no scalar for "
                    f"{minutes} minutes (its limit is {session.stall_minutes}). It is still "
                    "running and holding its resources.",
                    session_link(session),
                )
        elif session.stalled_at is not None:
            session.stalled_at = None
    db.session.commit()
    return flagged


# The notifications list --------------------------------------------------------------


def listed(user: User, *, limit: int = 50, unread_only: bool = False) -> list[Notification]:
    query = select(Notification).where(Notification.user_id == user.id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return list(db.session.scalars(query.order_by(Notification.id.desc()).limit(limit)))


def unread(user: User) -> int:
    return (
        db.session.scalar(
            select(func.count(Notification.id)).where(
                Notification.user_id == user.id, Notification.read_at.is_(None)
            )
        )
        or 0
    )


def mark_read(user: User, ids: list[int] | None = None) -> int:
    """Mark some (or all) of a user's notifications read; how many changed. Another
    user's ids are not found."""
    query = update(Notification).where(
        Notification.user_id == user.id, Notification.read_at.is_(None)
    )
    if ids is not None:
        owned = set(
            db.session.scalars(
                select(Notification.id).where(
                    Notification.user_id == user.id, Notification.id.in_(ids)
                )
            )
        )
        if missing := sorted(set(ids) - owned):
            raise NotFound(f"no notification {missing[0]}")
        query = query.where(Notification.id.in_(ids))
    changed = db.session.execute(
        query.values(read_at=utcnow()).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    return int(changed or 0)


def overview(user: User, *, unread_only: bool = False, limit: int = 50) -> dict[str, Any]:
    """What the notifications page and `podium notifications` show."""
    return {
        "unread": unread(user),
        "email_alerts": user.email_alerts,
        "email_enabled": mail_enabled(),
        "notifications": [
            notification_dict(n) for n in listed(user, limit=limit, unread_only=unread_only)
        ]
        if limit
        else [],
    }


def set_email_alerts(user: User, enabled: bool) -> User:
    user.email_alerts = enabled
    if not enabled:  # what waits to be sent is not sent
        db.session.execute(
            update(Notification)
            .where(Notification.user_id == user.id, Notification.email_state == PENDING)
            .values(email_state="")
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    return user


def notification_dict(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "kind": notification.kind,
        "subject": notification.subject,
        "body": notification.body,
        "link": notification.link,
        "created_at": notification.created_at,
        "read": notification.read_at is not None,
        "email": notification.email_state or None,
    }


# Mail --------------------------------------------------------------------------------


SENDING_FOR = timedelta(minutes=10)  # a claim older than this was a sender that died


def send_pending(limit: int = 50) -> int:
    """Send what waits in the outbox over SMTP. Each message is claimed first (pending
    to sending, by a conditional update), so two senders never send it twice; a claim a
    dead sender left is given back after `SENDING_FOR`. A mail server that cannot be
    reached costs no message an attempt: they wait for it. Returns how many were sent."""
    if not mail_enabled():
        return 0
    now = utcnow()
    db.session.execute(
        update(Notification)
        .where(Notification.email_state == SENDING, Notification.emailed_at < now - SENDING_FOR)
        .values(email_state=PENDING)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    waiting = db.session.scalars(
        select(Notification.id)
        .where(Notification.email_state == PENDING)
        .order_by(Notification.id)
        .limit(limit)
    ).all()
    if not waiting:
        return 0
    config = current_app.config
    try:
        smtp = _connect(config)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("cannot reach the mail server (%d e-mails wait): %s", len(waiting), exc)
        return 0
    sent = 0
    with smtp:
        for notification_id in waiting:
            claimed = db.session.execute(
                update(Notification)
                .where(Notification.id == notification_id, Notification.email_state == PENDING)
                .values(email_state=SENDING, emailed_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            db.session.commit()
            if not claimed:
                continue  # another sender has it
            notification = db.session.get(Notification, notification_id)
            user = db.session.get(User, notification.user_id) if notification else None
            if notification is None or user is None:
                continue
            if not user.email or not user.email_alerts:
                notification.email_state = ""
            else:
                try:
                    smtp.send_message(_message(config, notification, user))
                except (OSError, smtplib.SMTPException) as exc:
                    _failed_attempt(notification, str(exc))
                else:
                    notification.email_state = SENT
                    notification.emailed_at = utcnow()
                    sent += 1
            db.session.commit()
    return sent


def _connect(config) -> smtplib.SMTP:
    host, port = config["SMTP_HOST"], int(config["SMTP_PORT"])
    timeout = float(config["SMTP_TIMEOUT_SECONDS"])
    security = config["SMTP_SECURITY"]
    smtp: smtplib.SMTP
    if security == "tls":
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
        if security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
    if config.get("SMTP_USERNAME"):
        smtp.login(config["SMTP_USERNAME"], config.get("SMTP_PASSWORD") or "")
    return smtp


def _message(config, notification: Notification, user: User) -> EmailMessage:
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = user.email
    message["Subject"] = f"[Podium] {notification.subject}"
    base = (config.get("PUBLIC_URL") or "").rstrip("/")
    link = f"\n\n{base}{notification.link}" if notification.link and base else ""
    message.set_content(
        f"{notification.body or notification.subject}{link}\n\n"
        "You get these e-mails because your Podium account has e-mail alerts on; turn "
        "them off on your notifications page, or with `podium notifications --email off`.\n"
    )
    return message


def _failed_attempt(notification: Notification, error: str) -> None:
    """The server refused this message: tried again at the next pass, a few times."""
    notification.email_attempts += 1
    notification.email_error = error[:1000]
    notification.email_state = FAILED if notification.email_attempts >= MAIL_ATTEMPTS else PENDING
