"""Teams: groups of users who share sessions, datasets and models."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from portal.errors import Conflict, NotFound
from portal.extensions import db
from portal.models import Team, TeamMember, User


def mine(user: User) -> list[Team]:
    return list(
        db.session.scalars(
            select(Team).join(TeamMember).where(TeamMember.user_id == user.id).order_by(Team.name)
        )
    )


def find(viewer: User, name: str) -> Team:
    team = db.session.scalar(select(Team).where(Team.name == name))
    if team is None or not (viewer.is_admin or any(m.user_id == viewer.id for m in team.members)):
        raise NotFound(f"no team {name!r} of yours")
    return team


def create(founder: User, name: str) -> Team:
    if db.session.scalar(select(Team).where(Team.name == name)):
        raise Conflict(f"team {name!r} exists already")
    team = Team(name=name, members=[TeamMember(user_id=founder.id)])
    db.session.add(team)
    db.session.commit()
    return team


def add_member(viewer: User, team: Team, username: str) -> Team:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user {username!r}")
    if any(m.user_id == user.id for m in team.members):
        raise Conflict(f"{username} is in {team.name} already")
    team.members.append(TeamMember(user_id=user.id))
    db.session.commit()
    return team


def remove_member(team: Team, username: str) -> None:
    member = next((m for m in team.members if m.user.username == username), None)
    if member is None:
        raise NotFound(f"{username} is not in {team.name}")
    team.members.remove(member)
    db.session.commit()


def team_dict(team: Team) -> dict[str, Any]:
    return {"name": team.name, "members": sorted(m.user.username for m in team.members)}
