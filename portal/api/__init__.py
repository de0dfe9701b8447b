"""The REST API under /api/v1, documented at /api/v1/openapi.json."""

from flask import Flask

from portal.extensions import api, csrf


def register_api(app: Flask) -> None:
    from portal.api import auth, code, health, internal, nodes, sessions

    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    for module in (health, auth, code, sessions, nodes, internal):
        csrf.exempt(module.blp)
        api.register_blueprint(module.blp, url_prefix="/api/v1" + module.PREFIX)
