from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from portal.api.guards import BEARER, admin_required, token_required
from portal.api.schemas import CreditIn, CreditOut
from portal.services import users

PREFIX = "/users"
blp = Blueprint("api_users", __name__, description="Accounts and their GPU credit")


@blp.route("/<username>/credit", methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, CreditOut)
@token_required()
def credit(username: str):
    """GPU-hours left: one's own, or anyone's for administrators."""
    return users.find_user(g.user, username)


@blp.route("/<username>/credit", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(CreditIn)
@blp.response(200, CreditOut)
@admin_required
def add_credit(payload, username: str):
    """Add GPU-hours to a user's credit (negative to take some away)."""
    return users.add_credit(users.find_user(g.user, username), payload["add_gpu_hours"])
