"""The home page: what a visitor came for. Open competitions for everyone; a logged-in
user's latest sessions and submissions beside them."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user

from portal.models import Session, Submission
from portal.services import sessions as session_service
from portal.services.competitions import core, submissions

bp = Blueprint("home", __name__)
RECENT = 5


@bp.route("/")
def index():
    viewer = current_user if current_user.is_authenticated else None
    sessions: list[Session] = []
    mine: list[Submission] = []
    if viewer is not None:
        sessions, _ = session_service.search_sessions(
            viewer, session_service.SessionFilter(limit=RECENT)
        )
        mine = submissions.recent(viewer, RECENT)
    return render_template(
        "home.html",
        open_competitions=core.open_now(viewer),
        sessions=sessions,
        submissions=mine,
    )
