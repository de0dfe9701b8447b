"""Hyperparameter searches (`podium automl`): start, list, show, stop."""

from __future__ import annotations

from flask import current_app, g
from flask_smorest import Blueprint

from portal.api.code import artifact_store
from portal.api.guards import BEARER, token_required
from portal.api.schemas import SearchIn, SearchListArgs, SearchListOut, SearchOut
from portal.api.sessions import session_request
from portal.queue import redis_connection
from portal.services import searches as service
from portal.services import sessions as session_service

PREFIX = "/searches"
blp = Blueprint("api_searches", __name__, description="Hyperparameter searches")
SEARCH = "/<username>/<int:number>"


@blp.route("", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(SearchIn)
@blp.response(201, SearchOut)
@token_required()
def start_search(payload):
    """Start a search of an uploaded code archive: its trials are sessions of yours."""
    request_ = session_request(payload)
    search = service.start(
        g.user,
        payload["spec"],
        request_,
        archive=artifact_store().path(payload["code_digest"]),
        max_unpacked_bytes=current_app.config["MAX_CODE_UNPACKED_BYTES"],
        memo=payload["memo"],
    )
    session_service.forget_upload(current_app.extensions.get("redis"), g.user, search.code_digest)
    return service.search_dict(search)


@blp.route("", methods=["GET"])
@blp.doc(security=BEARER)
@blp.arguments(SearchListArgs, location="query")
@blp.response(200, SearchListOut(many=True))
@token_required()
def list_searches(args):
    """My searches, newest first (`all=true`: everyone's, administrators)."""
    return [
        service.search_dict(s, trials=False) for s in service.listing(g.user, everyone=args["all"])
    ]


@blp.route(SEARCH, methods=["GET"])
@blp.doc(security=BEARER)
@blp.response(200, SearchOut)
@token_required()
def get_search(username: str, number: int):
    """One search with its trials."""
    return service.search_dict(service.find(g.user, username, number))


@blp.route(SEARCH + "/stop", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, SearchOut)
@token_required()
def stop_search(username: str, number: int):
    """Stop the search and its sessions that have not ended."""
    search = service.find(g.user, username, number, change=True)
    return service.search_dict(service.stop(search, redis_connection()))
