from __future__ import annotations

import json

from flask import current_app, g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from portal.api.guards import BEARER, token_required
from portal.errors import NotFound
from portal.services import compare

PREFIX = "/compare"
blp = Blueprint("api_compare", __name__, description="Comparing sessions")


class CompareArgs(Schema):
    s = fields.String(required=True, metadata={"description": "USER/N,USER/N,…"})
    tag = fields.String(load_default=None, validate=validate.Length(min=1, max=128))
    points = fields.Integer(load_default=1000, validate=validate.Range(min=2, max=20000))
    start = fields.Integer(load_default=None)
    end = fields.Integer(load_default=None)


@blp.route("")
@blp.doc(
    security=BEARER,
    responses={200: {"description": "the tags, the lines of one tag, and the arguments"}},
)
@blp.arguments(CompareArgs, location="query")
@token_required()
def compare_sessions(args):
    """Sessions side by side: every tag they reported, each one's line of `tag` (the
    first tag by default) downsampled to about `points` buckets (within [start, end]
    when given), and the arguments they share and those that differ."""
    sessions = compare.resolve(g.user, args["s"].split(","))
    tags = compare.tags(sessions)
    tag = args["tag"] or (tags[0] if tags else None)
    if args["tag"] and args["tag"] not in tags:
        raise NotFound(f"none of these sessions reported {args['tag']!r}")
    body = {
        "sessions": [s.ident for s in sessions],
        "tags": tags,
        "tag": tag,
        "lines": compare.lines(sessions, tag, args["points"], args["start"], args["end"])
        if tag
        else [],
        "arguments": compare.arguments(sessions),
    }
    # Not through a schema: a hundred lines of a few thousand points each.
    return current_app.response_class(json.dumps(body), mimetype="application/json")
