"""Collaboration teams: groups of users who read each other's sessions, datasets and
checkpoints, and fork them.

Because membership opens one's work to the other members, it is consented to: a member
invites, and only the invited user turns the invitation into membership. A member may
leave at any time; nobody but the member themself (or an administrator) removes them.
Membership is read from the database on every check, so a change holds at the next
request. Competition teams (`portal.services.competitions`) are a separate thing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from portal.errors import Conflict, Forbidden, NotFound
from portal.extensions import db
from portal.models import Team, TeamInvitation, TeamMember, User
from portal.services import alerts
from portal.timeutil import isoformat


def mine(user: User) -> list[Team]:
    return list(
        db.session.scalars(
            select(Team).join(TeamMember).where(TeamMember.user_id == user.id).order_by(Team.name)
        )
    )


def find(viewer: User, name: str) -> Team:
    """A team `viewer` is in (any team, for administrators); 404 otherwise."""
    team = db.session.scalar(select(Team).where(Team.name == name))
    if team is None or not (viewer.is_admin or _is_member(team, viewer.id)):
        raise NotFound(f"no team {name!r} of yours")
    return team


def create(founder: User, name: str) -> Team:
    if db.session.scalar(select(Team).where(Team.name == name)):
        raise Conflict(f"team {name!r} exists already")
    team = Team(name=name, members=[TeamMember(user_id=founder.id)])
    db.session.add(team)
    db.session.commit()
    return team


def invite(viewer: User, team: Team, username: str) -> TeamInvitation:
    """Invite `username` into `team` (found with `find`, so `viewer` is a member or an
    administrator). Nothing is shared until the invited user accepts."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user {username!r}")
    if _is_member(team, user.id):
        raise Conflict(f"{username} is in {team.name} already")
    if any(i.user_id == user.id for i in team.invitations):
        raise Conflict(f"{username} is invited to {team.name} already")
    invitation = TeamInvitation(team=team, user_id=user.id, inviter_id=viewer.id)
    db.session.add(invitation)
    alerts.notify(
        user,
        "team_invitation",
        f"{viewer.username} invited you to {team.name}",
        f"{viewer.username} invited you to the team {team.name}, whose members share "
        f"sessions and datasets. Accept it with `podium team accept {team.name}`.",
        "/notifications",
    )
    db.session.commit()
    return invitation


def invitations_for(user: User) -> list[TeamInvitation]:
    """The invitations waiting for `user`'s answer, oldest first."""
    return list(
        db.session.scalars(
            select(TeamInvitation)
            .where(TeamInvitation.user_id == user.id)
            .order_by(TeamInvitation.created_at, TeamInvitation.id)
        )
    )


def accept(user: User, team_name: str) -> Team:
    """Join `team_name`: the one way anybody becomes a member."""
    invitation = _invitation_of(user, team_name)
    team = invitation.team
    if not _is_member(team, user.id):
        team.members.append(TeamMember(user_id=user.id))
    db.session.delete(invitation)
    db.session.commit()
    return team


def decline(user: User, team_name: str) -> None:
    db.session.delete(_invitation_of(user, team_name))
    db.session.commit()


def cancel(team: Team, username: str) -> None:
    """Withdraw an invitation (any member may, as any member may invite)."""
    invitation = next((i for i in team.invitations if i.user.username == username), None)
    if invitation is None:
        raise NotFound(f"{username} is not invited to {team.name}")
    team.invitations.remove(invitation)
    db.session.commit()


def remove_member(viewer: User, team: Team, username: str) -> None:
    """Leave `team`, or, for administrators, take a member out of it. Members may not
    remove each other: that would let one member take the team from the others."""
    if username != viewer.username and not viewer.is_admin:
        raise Forbidden(
            f"only {username} may take themself out of {team.name}: members do not remove "
            "each other (administrators may)"
        )
    member = next((m for m in team.members if m.user.username == username), None)
    if member is None:
        raise NotFound(f"{username} is not in {team.name}")
    team.members.remove(member)
    db.session.commit()


def team_dict(team: Team) -> dict[str, Any]:
    return {"name": team.name, "members": sorted(m.user.username for m in team.members)}


def invitation_dict(invitation: TeamInvitation) -> dict[str, Any]:
    """What the invited user needs to judge the invitation: who asks, and with whom they
    would share their work."""
    return {
        "team": invitation.team.name,
        "user": invitation.user.username,
        "invited_by": invitation.inviter.username,
        "members": team_dict(invitation.team)["members"],
        "created_at": isoformat(invitation.created_at),
    }


def _is_member(team: Team, user_id: int) -> bool:
    return any(m.user_id == user_id for m in team.members)


def _invitation_of(user: User, team_name: str) -> TeamInvitation:
    invitation = db.session.scalar(
        select(TeamInvitation)
        .join(Team)
        .where(TeamInvitation.user_id == user.id, Team.name == team_name)
    )
    if invitation is None:
        raise NotFound(f"no invitation to team {team_name!r}")
    return invitation
