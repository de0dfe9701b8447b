"""Server-rendered pages. Every asset, BokehJS included, is served by the portal itself,
so the pages work on an air-gapped cluster."""

from datetime import datetime

from flask import Flask, redirect, request, url_for
from markupsafe import Markup

from portal.errors import error_response
from portal.extensions import db, login_manager
from portal.models import User


def when(moment: datetime | str | None) -> Markup:
    """A moment as pages show it: relative ("closes in 12 days"), the UTC time on hover,
    and machine-readable for scripts and screen readers."""
    from portal.timeutil import isoformat, parse, relative, shown

    at = parse(moment)
    if at is None:
        return Markup("—")
    return Markup('<time datetime="{}" title="{} UTC">{}</time>').format(
        isoformat(at), shown(at), relative(at)
    )


def register_web(app: Flask) -> None:
    from portal.web import (
        account,
        admin,
        assets,
        auth,
        cluster,
        compare,
        competitions,
        datasets,
        home,
        organise,
        searches,
        sessions,
    )

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        user = db.session.get(User, int(user_id))
        # A suspended account's browser sessions end at its next request.
        return user if user is not None and user.active else None

    @login_manager.unauthorized_handler
    def unauthorized():
        # The pages' own JSON feeds get the error envelope; pages go to the login form.
        if request.path.endswith(".json") or request.accept_mimetypes.best == "application/json":
            return error_response(401, "unauthorized", "log in again")
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    for module in (
        assets,
        auth,
        home,
        account,
        sessions,
        searches,
        compare,
        cluster,
        datasets,
        competitions,
        organise,
        admin,
    ):
        app.register_blueprint(module.bp)

    app.jinja_env.filters["when"] = when
