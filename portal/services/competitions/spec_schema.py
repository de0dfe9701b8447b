"""The competition spec's format (docs/competitions.md), checked field by field: what
`podium competition create`, the API and the web form all accept."""

from __future__ import annotations

from datetime import UTC

from marshmallow import Schema, fields, validate

from grader.metrics import METRICS
from portal.services.competitions.core import CUSTOM

SLUG = validate.Regexp(r"^[a-z0-9][a-z0-9-]{1,62}$", error="a slug is 2-63 of a-z, 0-9 and -")
# What a round takes: predictions files, models (a session's checkpoint), or both.
ACCEPTS = ["files", "models", "both"]
# The one list of metrics: the grader's built-in ones, and an organiser's own scorer.
METRIC_NAMES = [*METRICS, CUSTOM]
MAX_ROUNDS = 20
MAX_QUOTA = 10**9


class RoundSpec(Schema):
    name = fields.String(load_default="", validate=validate.Length(max=200))
    starts_at = fields.AwareDateTime(required=True, default_timezone=UTC)
    ends_at = fields.AwareDateTime(required=True, default_timezone=UTC)
    dataset = fields.String(load_default="", validate=validate.Length(max=140))
    dataset_sessions_only = fields.Boolean(
        load_default=False,
        metadata={"description": "the dataset is mounted by sessions and never downloaded"},
    )
    test_inputs = fields.String(required=True)
    labels = fields.String(required=True)
    metric = fields.String(required=True, validate=validate.OneOf(METRIC_NAMES))
    tolerance = fields.Float(
        load_default=None,
        allow_none=True,
        allow_nan=False,
        validate=validate.Range(min=0, max=180, error="the tolerance is an angle from 0 to 180"),
        metadata={"description": "accuracy_within: degrees either way (default 1)"},
    )
    scorer = fields.String(load_default=None, allow_none=True)
    higher_is_better = fields.Boolean(load_default=None, allow_none=True)
    daily_quota = fields.Integer(load_default=5, validate=validate.Range(min=1, max=MAX_QUOTA))
    total_quota = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_QUOTA))
    public_fraction = fields.Float(
        load_default=0.5, validate=validate.Range(min=0, max=1, min_inclusive=False)
    )
    final_selections = fields.Integer(load_default=2, validate=validate.Range(min=1, max=20))
    advance_top = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))
    time_limit_s = fields.Integer(load_default=600, validate=validate.Range(min=1, max=86400))
    memory_mb = fields.Integer(load_default=2048, validate=validate.Range(min=64, max=2**20))
    publish_inputs = fields.Boolean(
        load_default=False,
        metadata={"description": "let participants download the test inputs (no labels)"},
    )
    accepts = fields.String(load_default="both", validate=validate.OneOf(ACCEPTS))


class CompetitionSpec(Schema):
    slug = fields.String(required=True, validate=SLUG)
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="", validate=validate.Length(max=100_000))
    visibility = fields.String(
        load_default="public", validate=validate.OneOf(["public", "unlisted", "private"])
    )
    team_size_limit = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100))
    rounds = fields.List(
        fields.Nested(RoundSpec), required=True, validate=validate.Length(min=1, max=MAX_ROUNDS)
    )
