from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional

from portal.errors import ApiError, Forbidden, NotFound, Unauthorized
from portal.extensions import db, login_limited, signup_limited
from portal.services import auth
from portal.web.forms import form_problem

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class LogoutForm(FlaskForm):
    pass


class SignupForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    email = StringField("E-mail (optional)", validators=[Optional(), Email(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=8, max=1024)])
    confirm = PasswordField(
        "Password again", validators=[DataRequired(), EqualTo("password", "the passwords differ")]
    )
    invitation = StringField("Invitation code", validators=[Optional(), Length(max=64)])


def _safe_next(target: str | None, default: str = "home.index") -> str:
    # Only local paths: an absolute URL here would be an open redirect.
    # Browsers read a backslash as a slash: "/\evil.example" means "//evil.example".
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for(default)


@bp.route("/login", methods=["GET", "POST"])
@login_limited
def login():
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        try:
            user = auth.authenticate(form.username.data or "", form.password.data or "")
        except (Unauthorized, Forbidden) as exc:
            error = exc.message
        else:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
    status = 401 if error else 200
    return render_template("auth/login.html", form=form, error=error), status


@bp.route("/signup", methods=["GET", "POST"])
@signup_limited
def signup():
    mode = current_app.config["SIGNUP"]
    if mode == "closed":
        raise NotFound("sign-up is closed here: ask an administrator for an account")
    form = SignupForm()
    error = None
    if form.validate_on_submit():
        try:
            user = auth.sign_up(
                form.username.data or "",
                form.password.data or "",
                email=form.email.data or None,
                mode=mode,
                credit=current_app.config["SIGNUP_CREDIT"],
                invitation=form.invitation.data or None,
            )
        except ApiError as exc:
            db.session.rollback()
            error = exc.message
        else:
            if not user.active:
                return render_template("auth/signup.html", form=None, waiting=True, mode=mode)
            login_user(user)
            # A new account lands on the competitions: what most come for.
            return redirect(_safe_next(request.args.get("next"), "competitions.index"))
    elif form.errors:
        error = form_problem(form)
    return render_template("auth/signup.html", form=form, error=error, mode=mode), (
        422 if error else 200
    )


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    if LogoutForm().validate_on_submit():
        logout_user()
    return redirect(url_for("auth.login"))
