from __future__ import annotations

from datetime import timedelta

from flask import current_app, g
from flask_smorest import Blueprint

from portal.api.guards import BEARER, token_required
from portal.api.schemas import LoginIn, MeOut, SignupIn, TokenOut, UserOut
from portal.extensions import login_limited, signup_limited
from portal.services import auth, users
from portal.timeutil import isoformat

PREFIX = "/auth"
blp = Blueprint("api_auth", __name__, description="Log in and out; who am I")


@blp.route("/tokens", methods=["POST"])
@blp.arguments(LoginIn)
@blp.response(201, TokenOut)
@login_limited
def create_token(payload):
    """Trade a username and password for a bearer token."""
    user = auth.authenticate(payload["username"], payload["password"])
    ttl = timedelta(days=current_app.config["TOKEN_TTL_DAYS"])
    secret = auth.issue_token(user, ttl=ttl, label=payload["label"])
    token = auth.resolve_token(secret)
    return {"token": secret, "expires_at": isoformat(token.expires_at), "user": user}


@blp.route("/users", methods=["POST"])
@blp.arguments(SignupIn)
@blp.response(201, UserOut)
@signup_limited
def sign_up(payload):
    """Create an account where the portal's sign-up policy allows it (open, with an
    invitation code, or waiting for an administrator's approval); then log in."""
    return auth.sign_up(
        payload["username"],
        payload["password"],
        email=payload["email"],
        mode=current_app.config["SIGNUP"],
        credit=current_app.config["SIGNUP_CREDIT"],
        invitation=payload["invitation"],
    )


@blp.route("/tokens/current", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@token_required()
def revoke_current_token():
    """Log out: the token in this request stops working."""
    auth.revoke_token(g.token)


@blp.route("/me")
@blp.doc(security=BEARER)
@blp.response(200, MeOut)
@token_required()
def me():
    """The user the token belongs to, and the limits that apply to them."""
    return {
        **users.user_dict(g.user),
        "limits": {"max_code_bytes": current_app.config["MAX_CODE_BYTES"]},
    }
