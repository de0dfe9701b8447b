from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from portal.api.guards import BEARER, token_required
from portal.api.schemas import (
    MemberIn,
    TeamIn,
    TeamInvitationOut,
    TeamInvitationSentOut,
    TeamOut,
)
from portal.services import teams as service

PREFIX = "/teams"
blp = Blueprint(
    "api_teams",
    __name__,
    description="Teams that share sessions and datasets; users join by accepting an invitation",
)


@blp.route("")
@blp.doc(security=BEARER)
@blp.response(200, TeamOut(many=True))
@token_required()
def list_teams():
    """My teams."""
    return [service.team_dict(t) for t in service.mine(g.user)]


@blp.route("", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(TeamIn)
@blp.response(201, TeamOut)
@token_required()
def create_team(payload):
    """Create a team; its founder is its first member."""
    return service.team_dict(service.create(g.user, payload["name"]))


@blp.route("/<name>/members", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(MemberIn)
@blp.response(202, TeamInvitationSentOut)
@token_required()
def invite(payload, name: str):
    """Invite a user (any member may): they become a member only when they accept."""
    team = service.find(g.user, name)
    invitation = service.invite(g.user, team, payload["username"])
    return {
        **service.invitation_dict(invitation),
        "name": team.name,
        "message": f"invited {invitation.user.username}: they join {team.name} if they accept",
    }


@blp.route("/<name>/invitations/<username>", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@token_required()
def cancel_invitation(name: str, username: str):
    """Withdraw an invitation (any member may)."""
    service.cancel(service.find(g.user, name), username)


@blp.route("/invitations")
@blp.doc(security=BEARER)
@blp.response(200, TeamInvitationOut(many=True))
@token_required()
def my_invitations():
    """Invitations waiting for my answer."""
    return [service.invitation_dict(i) for i in service.invitations_for(g.user)]


@blp.route("/<name>/accept", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, TeamOut)
@token_required()
def accept(name: str):
    """Accept an invitation: join the team and share my work with its members."""
    return service.team_dict(service.accept(g.user, name))


@blp.route("/<name>/decline", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(204)
@token_required()
def decline(name: str):
    """Decline an invitation."""
    service.decline(g.user, name)


@blp.route("/<name>/members/<username>", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@token_required()
def remove_member(name: str, username: str):
    """Leave a team. Members do not remove each other; administrators may remove anyone."""
    service.remove_member(g.user, service.find(g.user, name), username)
