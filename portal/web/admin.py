from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, render_template
from flask_login import current_user, login_required

from portal.services import sessions
from portal.services.nodes import nodes_with_allocations

bp = Blueprint("admin", __name__, url_prefix="/admin")


def admin_page(view):
    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_admin:
            abort(404)
        return view(*args, **kwargs)

    return wrapper


@bp.route("/nodes")
@admin_page
def nodes():
    return render_template(
        "admin/nodes.html", nodes=nodes_with_allocations(), pending=sessions.queue()
    )
