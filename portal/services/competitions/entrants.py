"""Competition teams: create, invite, join by invitation or code, leave."""

from __future__ import annotations

import re
import secrets
from typing import Any

from sqlalchemy import func, select

from portal.errors import ApiError, Conflict, Forbidden, NotFound
from portal.extensions import db
from portal.models import (
    Competition,
    CompetitionMember,
    CompetitionTeam,
    Submission,
    TeamInvite,
    User,
)
from portal.services.competitions import announcements
from portal.services.competitions.core import membership


def _team_named(competition: Competition, name: str) -> CompetitionTeam:
    team = db.session.scalar(
        select(CompetitionTeam).where(
            CompetitionTeam.competition_id == competition.id, CompetitionTeam.name == name
        )
    )
    if team is None:
        raise NotFound(f"no team {name!r} in {competition.slug}")
    return team


def _check_joinable(user: User, competition: Competition) -> None:
    mine = membership(user, competition)
    if mine is not None:
        raise Conflict(
            f"you are in team {mine.team.name} of {competition.slug} already: leave it first"
        )


def _check_room(competition: Competition, team: CompetitionTeam) -> None:
    if len(team.members) >= competition.team_size_limit:
        raise Conflict(
            f"team {team.name} is full: {competition.slug} allows "
            f"{competition.team_size_limit} members"
        )


TEAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TEAM_NAME_RULE = "a team name is 1-64 letters, digits, _ . - (starting with a letter or digit)"


def create_team(user: User, competition: Competition, name: str) -> CompetitionTeam:
    if not TEAM_NAME.match(name):
        raise ApiError(TEAM_NAME_RULE, code="invalid_input", status=422)
    _check_joinable(user, competition)
    if db.session.scalar(
        select(CompetitionTeam.id).where(
            CompetitionTeam.competition_id == competition.id, CompetitionTeam.name == name
        )
    ):
        raise Conflict(f"a team {name!r} exists in {competition.slug} already")
    team = CompetitionTeam(
        competition_id=competition.id, name=name, invite_code=secrets.token_urlsafe(12)
    )
    team.members.append(CompetitionMember(competition_id=competition.id, user_id=user.id))
    db.session.add(team)
    db.session.commit()
    return team


def team_of(user: User, competition: Competition, *, create: bool = False) -> CompetitionTeam:
    """The user's team here; with `create`, someone alone becomes a team of one."""
    mine = membership(user, competition)
    if mine is not None:
        return mine.team
    if not create:
        raise NotFound(f"you are in no team of {competition.slug}")
    name = user.username
    suffix = 1
    while db.session.scalar(
        select(CompetitionTeam.id).where(
            CompetitionTeam.competition_id == competition.id, CompetitionTeam.name == name
        )
    ):
        suffix += 1
        name = f"{user.username}-{suffix}"
    return create_team(user, competition, name)


def invite(user: User, competition: Competition, username: str) -> TeamInvite:
    team = team_of(user, competition)
    invited = db.session.scalar(select(User).where(User.username == username))
    if invited is None:
        raise NotFound(f"no user {username!r}")
    if any(m.user_id == invited.id for m in team.members):
        raise Conflict(f"{username} is in {team.name} already")
    _check_room(competition, team)
    existing = db.session.scalar(
        select(TeamInvite).where(TeamInvite.team_id == team.id, TeamInvite.user_id == invited.id)
    )
    if existing is not None:
        return existing
    invitation = TeamInvite(team_id=team.id, user_id=invited.id)
    db.session.add(invitation)
    announcements.invited(
        invited, team.name, user, f"in {competition.title}", f"/competitions/{competition.slug}"
    )
    db.session.commit()
    return invitation


def invites_for(user: User, competition: Competition) -> list[TeamInvite]:
    return list(
        db.session.scalars(
            select(TeamInvite)
            .join(CompetitionTeam)
            .where(TeamInvite.user_id == user.id, CompetitionTeam.competition_id == competition.id)
        )
    )


def join(
    user: User, competition: Competition, *, team: str | None = None, code: str | None = None
) -> CompetitionTeam:
    """Accept an invitation to `team`, or join with the team's invite code."""
    _check_joinable(user, competition)
    if code:
        target = db.session.scalar(
            select(CompetitionTeam).where(
                CompetitionTeam.competition_id == competition.id,
                CompetitionTeam.invite_code == code,
            )
        )
        if target is None:
            raise NotFound(f"no team of {competition.slug} has this invite code")
    elif team:
        target = _team_named(competition, team)
        invitation = db.session.scalar(
            select(TeamInvite).where(TeamInvite.team_id == target.id, TeamInvite.user_id == user.id)
        )
        if invitation is None:
            raise Forbidden(f"team {team} has not invited you: ask for an invitation or its code")
        db.session.delete(invitation)
    else:
        raise ApiError("name the team whose invitation you accept, or give an invite code")
    _check_room(competition, target)
    target.members.append(CompetitionMember(competition_id=competition.id, user_id=user.id))
    db.session.commit()
    return target


def leave(user: User, competition: Competition) -> None:
    """Leave one's team, unless one has submitted with it (a new team would bring fresh
    quotas and a second entry on the board). A team left empty without submissions is
    removed."""
    mine = membership(user, competition)
    if mine is None:
        raise NotFound(f"you are in no team of {competition.slug}")
    team = mine.team
    if db.session.scalar(
        select(func.count(Submission.id)).where(
            Submission.team_id == team.id, Submission.user_id == user.id
        )
    ):
        raise Conflict(
            f"you have submitted with team {team.name}: you stay in it for this competition"
        )
    team.members.remove(mine)
    if not team.members and not db.session.scalar(
        select(func.count(Submission.id)).where(Submission.team_id == team.id)
    ):
        db.session.delete(team)
    db.session.commit()


def teams(competition: Competition) -> list[CompetitionTeam]:
    """Every team of the competition, by name."""
    return list(
        db.session.scalars(
            select(CompetitionTeam)
            .where(CompetitionTeam.competition_id == competition.id)
            .order_by(CompetitionTeam.name)
        )
    )


def find_team(competition: Competition, name: str) -> CompetitionTeam:
    return _team_named(competition, name)


def team_dict(team: CompetitionTeam, *, private: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": team.name,
        "members": sorted(m.user.username for m in team.members),
        "disqualified_reason": team.disqualified_reason,
    }
    if private:
        body["invite_code"] = team.invite_code
        body["invited"] = sorted(
            i.user.username
            for i in db.session.scalars(select(TeamInvite).where(TeamInvite.team_id == team.id))
        )
    return body
