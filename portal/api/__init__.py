"""The REST API under /api/v1, documented at /api/v1/openapi.json."""

from flask import Flask
from flask_smorest import Api

from portal.api.schemas import ErrorEnvelope
from portal.extensions import csrf


class PodiumApi(Api):
    ERROR_SCHEMA = ErrorEnvelope


def register_api(app: Flask, *, nodes_only: bool = False) -> None:
    """One Api per app: the OpenAPI document belongs to the app it describes. With
    `nodes_only`, the agents' routes and the health check alone."""
    from portal.api import health, internal

    modules: tuple = (health, internal)
    if not nodes_only:
        from portal.api import (
            auth,
            code,
            compare,
            competitions,
            datasets,
            environments,
            monitoring,
            nodes,
            notifications,
            searches,
            serving,
            sessions,
            teams,
            users,
        )

        modules = (
            health,
            auth,
            code,
            sessions,
            searches,
            serving,
            compare,
            datasets,
            teams,
            competitions,
            nodes,
            environments,
            monitoring,
            notifications,
            users,
            internal,
        )
    api = PodiumApi(app)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    for module in modules:
        csrf.exempt(module.blp)
        api.register_blueprint(module.blp, url_prefix="/api/v1" + module.PREFIX)
