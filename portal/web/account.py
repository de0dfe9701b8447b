"""One's own account pages: credit with its ledger (administrators: anyone's, and grant
or refund), and notifications with e-mail alerts on or off. The same service calls as
`/api/v1/users/<name>/credit…` and `/api/v1/notifications`."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import DecimalField, StringField
from wtforms.validators import InputRequired, Length, Optional

from portal.errors import ApiError
from portal.services import alerts, credits, users
from portal.services.sessions import find_session
from portal.web.forms import form_problem, query_int

bp = Blueprint("account", __name__)


@bp.app_context_processor
def unread_count():
    """The navigation's unread count, on every page of a logged-in user."""
    if current_user.is_authenticated:
        return {"unread_notifications": alerts.unread(current_user)}
    return {"unread_notifications": 0}


class CreditForm(FlaskForm):
    amount = DecimalField("Amount", validators=[InputRequired()])
    reason = StringField("Reason", validators=[Length(max=500)])
    session = StringField("For session", validators=[Optional(), Length(max=160)])


@bp.route("/credit", defaults={"username": None})
@bp.route("/credit/<username>")
@login_required
def credit(username: str | None):
    user = users.find_user(current_user, username or current_user.username)
    before = query_int("before")
    entries = credits.ledger(user, limit=50, before=before)
    return render_template(
        "account/credit.html",
        account=user,
        summary=credits.summary(user),
        entries=credits.ledger_dicts(entries),
        next_before=entries[-1].id if len(entries) == 50 else None,
        form=CreditForm(),
    )


@bp.route("/credit/<username>/<kind>", methods=["POST"])
@login_required
def change_credit(username: str, kind: str):
    """An administrator's grant or refund."""
    user = users.find_user(current_user, username)
    form = CreditForm()
    if not current_user.is_admin or kind not in ("grant", "refund"):
        flash("only administrators grant or refund credit", "error")
    elif not form.validate_on_submit():
        flash(form_problem(form), "error")
    else:
        try:
            amount = float(form.amount.data)
            if kind == "grant":
                credits.grant(user, amount, actor=current_user, reason=form.reason.data or "")
            else:
                session = (
                    find_session(current_user, form.session.data) if form.session.data else None
                )
                credits.refund(
                    user, amount, actor=current_user, reason=form.reason.data or "", session=session
                )
            flash(f"{kind} of {amount:g} recorded", "info")
        except ApiError as exc:
            flash(exc.message, "error")
    return redirect(url_for("account.credit", username=user.username))


class EmailForm(FlaskForm):
    """E-mail alerts on or off: a button, with the CSRF token."""


@bp.route("/notifications")
@login_required
def notifications():
    return render_template(
        "account/notifications.html",
        overview=alerts.overview(current_user, limit=100),
        form=EmailForm(),
    )


@bp.route("/notifications/read", methods=["POST"])
@login_required
def mark_read():
    if EmailForm().validate_on_submit():
        alerts.mark_read(current_user)
    return redirect(url_for("account.notifications"))


@bp.route("/notifications/email/<state>", methods=["POST"])
@login_required
def email(state: str):
    if state in ("on", "off") and EmailForm().validate_on_submit():
        alerts.set_email_alerts(current_user, state == "on")
        flash(f"e-mail alerts are {state}", "info")
    return redirect(url_for("account.notifications"))
