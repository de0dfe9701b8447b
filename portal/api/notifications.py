"""What users are told: the notifications list, read marks, e-mail alerts on or off."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from portal.api.guards import BEARER, token_required
from portal.api.schemas import (
    AcceptedOut,
    EmailAlertsIn,
    NotificationListArgs,
    NotificationsOut,
    ReadIn,
)
from portal.services import alerts

PREFIX = "/notifications"
blp = Blueprint("api_notifications", __name__, description="Notifications and e-mail alerts")


@blp.route("", methods=["GET"])
@blp.doc(security=BEARER)
@blp.arguments(NotificationListArgs, location="query")
@blp.response(200, NotificationsOut)
@token_required()
def listed(args):
    """One's notifications, newest first, with the unread count."""
    return alerts.overview(g.user, unread_only=args["unread"], limit=args["limit"])


@blp.route("/read", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ReadIn)
@blp.response(200, AcceptedOut)
@token_required()
def mark_read(payload):
    """Mark these notifications (all without `ids`) read."""
    return {"accepted": alerts.mark_read(g.user, payload["ids"])}


@blp.route("/email", methods=["PUT"])
@blp.doc(security=BEARER)
@blp.arguments(EmailAlertsIn)
@blp.response(200, NotificationsOut)
@token_required()
def email_alerts(payload):
    """Turn e-mail alerts on or off for oneself."""
    alerts.set_email_alerts(g.user, payload["enabled"])
    return alerts.overview(g.user, limit=0)
