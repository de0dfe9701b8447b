from __future__ import annotations

from flask import current_app, g, request
from flask_smorest import Blueprint

from portal.api.guards import BEARER, token_required
from portal.api.schemas import CodeOut
from portal.errors import NotFound
from portal.services import sessions
from portal.services.artifacts import ArtifactStore

PREFIX = "/code"
blp = Blueprint("code", __name__, description="Code archives, stored by content")

GZIP_BODY = {
    "required": True,
    "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
}


def artifact_store() -> ArtifactStore:
    return ArtifactStore(current_app.config["ARTIFACT_ROOT"])


@blp.route("", methods=["PUT"])
@blp.doc(security=BEARER, requestBody=GZIP_BODY)
@blp.response(201, CodeOut)
@token_required()
def upload_code():
    """Upload a gzipped tar of a code folder; answers its SHA-256. Each user's stored
    code has a quota (`CODE_QUOTA_BYTES`); an upload past it is cut off (413)."""
    config = current_app.config
    digest, size = sessions.store_code(
        g.user,
        request.stream,
        request.content_length,
        artifact_store(),
        current_app.extensions.get("redis"),
        limit=config["MAX_CODE_BYTES"],
        quota=config["CODE_QUOTA_BYTES"],
    )
    return {"digest": digest, "size": size}


@blp.route("/<digest>", methods=["HEAD"])
@blp.doc(security=BEARER)
@blp.response(200)
@token_required()
def has_code(digest: str):
    """200 when a session of the caller's runs this archive, so the client can skip the
    upload; 404 otherwise, whatever the store holds, so that it tells nobody which
    files others have stored."""
    if not sessions.runs_code(g.user, digest) or not artifact_store().exists(digest):
        raise NotFound("no such code archive")
    return ""
