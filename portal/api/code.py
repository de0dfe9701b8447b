from __future__ import annotations

from flask import current_app, g, request
from flask_smorest import Blueprint

from portal.api.guards import BEARER, token_required
from portal.api.schemas import CodeOut
from portal.errors import NotFound
from portal.services import sessions
from portal.services.artifacts import ArtifactStore, TooLarge

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
    limit = current_app.config["MAX_CODE_BYTES"]
    if (request.content_length or 0) > limit:
        raise TooLarge(limit)
    redis = current_app.extensions.get("redis")
    quota = current_app.config["CODE_QUOTA_BYTES"]
    with sessions.code_upload_turn(g.user, redis):
        room = sessions.code_room(g.user, redis, quota)
        if (request.content_length or 0) > room:
            raise sessions.quota_error(quota - room, quota)
        try:
            digest, size = artifact_store().put(request.stream, max_bytes=min(limit, room))
        except TooLarge:
            if room >= limit:
                raise
            raise sessions.quota_error(quota - room, quota) from None
        sessions.record_upload(redis, g.user, digest, size)
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
