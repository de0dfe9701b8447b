from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField

from portal.errors import ApiError
from portal.extensions import db
from portal.models import Level
from portal.services import sessions, users
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


class AccountForm(FlaskForm):
    level = SelectField("Level", choices=[level.value for level in Level])
    active = HiddenField()


@bp.route("/users")
@admin_page
def accounts():
    """Every account: its level, and whether it may log in (approve sign-ups here)."""
    return render_template("admin/users.html", accounts=users.everyone(), form=AccountForm())


@bp.route("/users/<username>", methods=["POST"])
@admin_page
def change_account(username: str):
    """Set an account's level, or approve or suspend it: what `podium user` does."""
    form = AccountForm()
    if form.validate_on_submit():
        change: dict = {"level": form.level.data}
        if form.active.data in ("0", "1"):
            change["active"] = form.active.data == "1"
        try:
            users.change(users.find_user(current_user, username), **change)
        except ApiError as exc:
            db.session.rollback()
            flash(exc.message, "error")
    return redirect(url_for("admin.accounts"))
