from __future__ import annotations

from datetime import timedelta

from flask import g
from flask_smorest import Blueprint

from portal.api.guards import BEARER, admin_required, token_required
from portal.api.schemas import (
    CreditIn,
    CreditOut,
    InvitationIn,
    InvitationOut,
    UserAdminOut,
    UserChangeIn,
)
from portal.services import auth, users
from portal.timeutil import isoformat, utcnow

PREFIX = "/users"
blp = Blueprint(
    "api_users", __name__, description="Accounts: levels, approval, invitations and GPU credit"
)


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


@blp.route("")
@blp.doc(security=BEARER)
@blp.response(200, UserAdminOut(many=True))
@admin_required
def list_users():
    """Every account with its level, whether it is active, and its credit."""
    return [users.user_dict(u) for u in users.everyone()]


@blp.route("/<username>", methods=["PATCH"])
@blp.doc(security=BEARER)
@blp.arguments(UserChangeIn)
@blp.response(200, UserAdminOut)
@admin_required
def change_user(payload, username: str):
    """Set a user's level (user, organiser, trusted, admin), or approve (`active: true`)
    or suspend an account."""
    user = users.change(users.find_user(g.user, username), **payload)
    return users.user_dict(user)


@blp.route("/invitations", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(InvitationIn)
@blp.response(201, InvitationOut)
@admin_required
def invite(payload):
    """A sign-up invitation code, for portals whose sign-up needs one (shown once)."""
    ttl = timedelta(days=payload["days"])
    code = auth.create_invitation(g.user, uses=payload["uses"], ttl=ttl)
    return {"code": code, "uses": payload["uses"], "expires_at": isoformat(utcnow() + ttl)}
