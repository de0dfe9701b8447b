from __future__ import annotations

from datetime import timedelta

from flask import g
from flask_smorest import Blueprint

from portal.api.guards import BEARER, admin_required, token_required
from portal.api.schemas import (
    CreditEntryOut,
    CreditIn,
    CreditOut,
    InvitationIn,
    InvitationOut,
    LedgerArgs,
    RefundIn,
    UserAdminOut,
    UserChangeIn,
)
from portal.services import auth, credits, users
from portal.services.sessions import find_session
from portal.timeutil import isoformat, utcnow

PREFIX = "/users"
blp = Blueprint(
    "api_users", __name__, description="Accounts: levels, approval, invitations and credit"
)


@blp.route("/<username>/credit", methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, CreditOut)
@token_required()
def credit(username: str):
    """Credit left, the rates, and what running sessions cost an hour: one's own, or
    anyone's for administrators."""
    return credits.summary(users.find_user(g.user, username))


@blp.route("/<username>/credit/ledger", methods=["GET"])
@blp.doc(security=BEARER)
@blp.arguments(LedgerArgs, location="query")
@blp.response(200, CreditEntryOut(many=True))
@token_required()
def ledger(args, username: str):
    """Every grant, charge and refund, newest first (`before`: the next page)."""
    user = users.find_user(g.user, username)
    return credits.ledger_dicts(credits.ledger(user, limit=args["limit"], before=args["before"]))


@blp.route("/<username>/credit/grants", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(CreditIn)
@blp.response(201, CreditEntryOut)
@admin_required
def grant_credit(payload, username: str):
    """Grant credit (administrators): a positive amount, with the reason."""
    user = users.find_user(g.user, username)
    entry = credits.grant(user, payload["amount"], actor=g.user, reason=payload["reason"])
    return credits.ledger_dicts([entry])[0]


@blp.route("/<username>/credit/refunds", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(RefundIn)
@blp.response(201, CreditEntryOut)
@admin_required
def refund_credit(payload, username: str):
    """Give credit back (administrators), for one of the user's sessions or in general."""
    user = users.find_user(g.user, username)
    session = find_session(g.user, payload["session"]) if payload["session"] else None
    entry = credits.refund(
        user, payload["amount"], actor=g.user, reason=payload["reason"], session=session
    )
    return credits.ledger_dicts([entry])[0]


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
