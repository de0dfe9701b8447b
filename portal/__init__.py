"""The Podium portal: the single owner of the database, the REST API and the web pages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_app(
    config: dict[str, Any] | None = None,
    *,
    serve: bool = True,
    nodes_only: bool = False,
    migrations: bool = True,
) -> Flask:
    """Build the portal. `config` overrides everything else (tests pass theirs here).
    The scheduler and the grader, which answer no request, build it without its routes
    (`serve=False`): they never load the pages' plotting libraries. The portal process
    that answers node agents serves the agents' API alone (`nodes_only`). Processes
    that never migrate the database leave Alembic out (`migrations=False`).

    Flask and the rest are imported here, not with the package: `podium up`'s supervisor
    and the command line import parts of it without holding a web framework."""
    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from portal.config import instance_path_from_env, load_config
    from portal.extensions import (
        CONTENT_SECURITY_POLICY,
        csrf,
        db,
        limiter,
        login_manager,
        talisman,
    )

    instance_path = Path((config or {}).get("INSTANCE_PATH") or instance_path_from_env())
    app = Flask(__name__, instance_path=str(instance_path), instance_relative_config=True)
    app.config.update(load_config(instance_path))
    app.config.update(config or {})
    if not app.config.get("SECRET_KEY"):
        raise RuntimeError("SECRET_KEY is not set: run `podium up` once, or set PODIUM_SECRET_KEY")

    if proxies := int(app.config.get("TRUSTED_PROXIES") or 0):
        # The client's address (rate limits count by it) and scheme as the proxies in
        # front name them; without this, every client would be the proxy.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies
        )
    db.init_app(app)
    if migrations:  # `flask db …` and the supervisor's migrating child
        from flask_migrate import Migrate

        Migrate(app, db, directory=str(MIGRATIONS_DIR))
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    csrf.init_app(app)
    # Behind TLS (a public URL of https), cookies go over TLS only, and browsers are told
    # to keep to it; cookies are HttpOnly and SameSite=Lax either way.
    tls = str(app.config.get("PUBLIC_URL") or "").startswith("https://")
    app.config.setdefault("REMEMBER_COOKIE_SECURE", tls)
    app.config.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")
    talisman.init_app(
        app,
        force_https=False,  # TLS ends in front of the portal, where a site has it
        strict_transport_security=tls,
        session_cookie_secure=tls,
        content_security_policy=CONTENT_SECURITY_POLICY,
        frame_options="DENY",
        referrer_policy="same-origin",
    )
    if app.config.get("REDIS_URL") and app.config["RATELIMIT_STORAGE_URI"] == "memory://":
        app.config["RATELIMIT_STORAGE_URI"] = app.config["REDIS_URL"]
    limiter.init_app(app)
    with app.app_context():
        _tune_sqlite(app)

    from portal import queue
    from portal.routing import DatabaseInt

    # Before any route is added: every `<int:...>` in a path is a database id.
    app.url_map.converters["int"] = DatabaseInt
    queue.init_app(app)
    if serve:
        from portal.api import register_api
        from portal.errors import register_error_handlers
        from portal.web import register_web

        register_api(app, nodes_only=nodes_only)
        if not nodes_only:
            register_web(app)
        register_error_handlers(app)
    return app


def _tune_sqlite(app: Flask) -> None:
    """Several processes share the SQLite file: WAL lets readers run beside a writer,
    and the busy timeout makes a writer wait for the lock instead of failing."""
    from sqlalchemy import event

    from portal.extensions import db

    if db.engine.dialect.name != "sqlite":
        return

    @event.listens_for(db.engine, "connect")
    def _pragmas(dbapi_connection, _record):  # pragma: no cover - trivial
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
