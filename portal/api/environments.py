from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from portal.api.guards import BEARER, token_required
from portal.api.schemas import EnvironmentImageOut
from portal.services import nodes

PREFIX = "/environments"
blp = Blueprint("api_environments", __name__, description="Session environment images on the nodes")


@blp.route("")
@blp.doc(security=BEARER)
@blp.response(200, EnvironmentImageOut(many=True))
@token_required()
def list_environments():
    """The environment images each node holds, with size and last use: every one for
    administrators, those of one's own sessions for everyone else."""
    return nodes.environment_images(g.user)
