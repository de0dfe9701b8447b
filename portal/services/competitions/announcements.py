"""What participants are told (`alerts.notify`: the portal's notifications, and e-mail
where the site sends it): a submission scored, failed (with the reason) or disqualified,
an invitation to a team, a round opening or ending. Each is written in the transaction
of the change it reports; rounds are announced by the scheduler's housekeeping
(`announce_rounds`), once each, and only within a day of the moment (a round that
opened before this existed is not announced late)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from portal.extensions import db
from portal.models import (
    Competition,
    CompetitionMember,
    CompetitionTeam,
    Round,
    Submission,
    SubmissionStatus,
    User,
)
from portal.services import alerts
from portal.timeutil import utcnow

LATE = timedelta(days=1)  # a round's moment older than this is not announced


def _link(competition: Competition) -> str:
    return f"/competitions/{competition.slug}"


def _members(team_id: int) -> list[User]:
    return list(
        db.session.scalars(
            select(User)
            .join(CompetitionMember, CompetitionMember.user_id == User.id)
            .where(CompetitionMember.team_id == team_id)
        )
    )


def submission_outcome(submission: Submission) -> None:
    """Tell the submitting team how its submission ended (not committed)."""
    round_ = submission.round
    competition = round_.competition
    what = f"submission {submission.id} to {competition.title} (round {round_.number})"
    if submission.disqualified_reason:
        subject, body = (
            f"Submission {submission.id} was disqualified",
            f"Your {what} was disqualified: {submission.disqualified_reason}",
        )
        kind = "submission_disqualified"
    elif submission.status == SubmissionStatus.SCORED.value:
        shown = "" if submission.public_score is None else f" {submission.public_score:.6g}"
        subject = f"Submission {submission.id} scored{shown}"
        body = f"Your {what} was scored: public score{shown or ' —'}."
        kind = "submission_scored"
    elif submission.status in (
        SubmissionStatus.FAILED.value,
        SubmissionStatus.INVALID.value,
        SubmissionStatus.ERRORED.value,
    ):
        subject = f"Submission {submission.id} failed"
        body = f"Your {what} failed: {submission.error or 'no reason was given'}"
        kind = "submission_failed"
    else:
        return
    for member in _members(submission.team_id):
        alerts.notify(member, kind, subject, body, _link(competition))


def team_disqualified(team: CompetitionTeam, competition: Competition) -> None:
    for member in _members(team.id):
        alerts.notify(
            member,
            "team_disqualified",
            f"Your team {team.name} was disqualified from {competition.title}",
            f"Your team {team.name} was disqualified: {team.disqualified_reason}",
            _link(competition),
        )


def invited(user: User, team_name: str, inviter: User, where: str, link: str) -> None:
    alerts.notify(
        user,
        "team_invitation",
        f"{inviter.username} invited you to {team_name}",
        f"{inviter.username} invited you to the team {team_name} {where}. Accept or decline "
        "it there.",
        link,
    )


def announce_rounds(now: datetime | None = None) -> int:
    """Tell each competition's entrants of the rounds that opened or ended since last
    time; commits. Returns how many announcements were made."""
    now = now or utcnow()
    due = db.session.scalars(
        select(Round)
        .options(selectinload(Round.competition))
        .where(
            or_(
                Round.opened_told.is_(False) & (Round.starts_at <= now),
                Round.ended_told.is_(False) & (Round.ends_at <= now),
            )
        )
    ).all()
    made = 0
    for round_ in due:
        for moment, told, verb in (
            (round_.starts_at, "opened_told", "opened"),
            (round_.ends_at, "ended_told", "ended"),
        ):
            if getattr(round_, told) or moment > now:
                continue
            setattr(round_, told, True)
            if moment < now - LATE:
                continue
            made += _announce(round_, verb)
    db.session.commit()
    return made


def _announce(round_: Round, verb: str) -> int:
    competition = round_.competition
    entrants = db.session.scalars(
        select(User)
        .join(CompetitionMember, CompetitionMember.user_id == User.id)
        .where(CompetitionMember.competition_id == competition.id)
    ).all()
    name = f"round {round_.number}" + (f" ({round_.name})" if round_.name else "")
    for user in entrants:
        alerts.notify(
            user,
            f"round_{verb}",
            f"{competition.title}: {name} {verb}",
            f"{competition.title}: {name} has {verb}."
            + (
                f" It takes submissions until {round_.ends_at:%Y-%m-%d %H:%M} UTC."
                if verb == "opened"
                else " Its final ranking follows from each team's selected submissions."
            ),
            _link(competition),
        )
    return len(entrants)
