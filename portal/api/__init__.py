"""The REST API under /api/v1, documented at /api/v1/openapi.json."""

from flask import Flask
from flask_smorest import Api

from portal.api.schemas import ErrorEnvelope
from portal.extensions import csrf


class PodiumApi(Api):
    ERROR_SCHEMA = ErrorEnvelope


def register_api(app: Flask) -> None:
    """One Api per app: the OpenAPI document belongs to the app it describes."""
    from portal.api import (
        auth,
        code,
        compare,
        competitions,
        datasets,
        environments,
        health,
        internal,
        monitoring,
        nodes,
        notifications,
        sessions,
        teams,
        users,
    )

    api = PodiumApi(app)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    for module in (
        health,
        auth,
        code,
        sessions,
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
    ):
        csrf.exempt(module.blp)
        api.register_blueprint(module.blp, url_prefix="/api/v1" + module.PREFIX)
