from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from portal.api.guards import BEARER, token_required
from portal.api.schemas import MemberIn, TeamIn, TeamOut
from portal.services import teams as service

PREFIX = "/teams"
blp = Blueprint("api_teams", __name__, description="Teams that share sessions and datasets")


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
@blp.response(200, TeamOut)
@token_required()
def add_member(payload, name: str):
    """Add a user (any member may)."""
    team = service.find(g.user, name)
    return service.team_dict(service.add_member(g.user, team, payload["username"]))


@blp.route("/<name>/members/<username>", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@token_required()
def remove_member(name: str, username: str):
    """Leave a team, or remove a member from it."""
    service.remove_member(service.find(g.user, name), username)
