from __future__ import annotations

from flask import current_app, g, request, send_file
from flask_smorest import Blueprint

from portal.api.code import GZIP_BODY, artifact_store
from portal.api.guards import BEARER, token_optional, token_required
from portal.api.schemas import DatasetOut, DatasetVersionOut, PushArgs, PushOut
from portal.services import datasets as service
from portal.services.artifacts import TooLarge

PREFIX = "/datasets"
blp = Blueprint("api_datasets", __name__, description="Versioned datasets")


@blp.route("")
@blp.doc(security=[*BEARER, {}])
@blp.response(200, DatasetOut(many=True))
@token_optional
def list_datasets():
    """Datasets the caller may read (public ones without a token)."""
    return [service.dataset_dict(d) for d in service.visible(g.user)]


@blp.route("/<name>")
@blp.doc(security=[*BEARER, {}])
@blp.response(200, DatasetOut)
@token_optional
def get_dataset(name: str):
    """One dataset with its versions."""
    return service.dataset_dict(service.find(g.user, name))


@blp.route("/<name>/versions", methods=["POST"])
@blp.doc(security=BEARER, requestBody=GZIP_BODY)
@blp.arguments(PushArgs, location="query")
@blp.response(201, PushOut)
@token_required()
def push(args, name: str):
    """Push a gzipped tar as the next version; an unchanged push makes none."""
    config = current_app.config
    limit = config["MAX_DATASET_BYTES"]
    if (request.content_length or 0) > limit:
        raise TooLarge(limit)
    version, created = service.push(
        g.user,
        name,
        request.stream,
        artifact_store(),
        visibility=args["visibility"],
        team=args["team"],
        description=args["description"],
        max_bytes=limit,
        max_unpacked_bytes=config["MAX_DATASET_UNPACKED_BYTES"],
        max_files=config["MAX_DATASET_FILES"],
    )
    return {
        "dataset": service.dataset_dict(version.dataset),
        "version": service.version_dict(version),
        "created": created,
    }


@blp.route("/<name>/versions/<int:number>/archive")
@blp.doc(security=[*BEARER, {}])
@blp.response(200, description="the version as a gzipped tar")
@token_optional
def pull(name: str, number: int):
    """Download one version (not a sessions-only dataset, but by its owner)."""
    version = service.find_version(g.user, f"{name}:{number}")
    service.check_leaves(g.user, [version.dataset], "a download")
    service.touch(version.dataset)
    return send_file(
        artifact_store().path(version.digest),
        mimetype="application/gzip",
        as_attachment=True,
        download_name=f"{name}-{number}.tar.gz",
    )


@blp.route("/<name>", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@token_required()
def remove(name: str):
    """Remove a dataset with all its versions (owner or administrator)."""
    service.remove(g.user, service.find(g.user, name), artifact_store())


@blp.route("/<name>/versions/<int:number>", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@token_required()
def remove_version(name: str, number: int):
    """Remove one version, unless a session uses it."""
    service.remove(g.user, service.find(g.user, name), artifact_store(), number)


@blp.route("/<name>/versions/<int:number>")
@blp.doc(security=[*BEARER, {}])
@blp.response(200, DatasetVersionOut)
@token_optional
def get_version(name: str, number: int):
    """One version."""
    return service.version_dict(service.find_version(g.user, f"{name}:{number}"))
