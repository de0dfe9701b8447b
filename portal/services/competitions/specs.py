"""Competitions from a spec (docs/competitions.md): its text checked, the competition
and its rounds created with their files."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import yaml
from marshmallow import ValidationError
from sqlalchemy import select

from portal.errors import ApiError, Conflict, first_problem
from portal.extensions import db
from portal.models import Competition, Round, User
from portal.services import datasets as dataset_service
from portal.services.artifacts import ArtifactStore
from portal.services.competitions.core import SpecError, require_organiser_level
from portal.services.competitions.rounds import _apply_round_fields, _round_files, round_dict
from portal.services.competitions.spec_schema import CompetitionSpec
from portal.timeutil import isoformat, utcnow


def parse_spec(text: str) -> dict:
    """A spec's YAML (or JSON) text, validated; ApiError names the first problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ApiError(f"the spec is not YAML or JSON: {exc}", code="invalid_spec") from exc
    if not isinstance(raw, dict):
        raise ApiError("the spec must be a mapping", code="invalid_spec")
    return validated(raw)


def validated(raw: dict) -> dict:
    """A spec as a mapping, checked field by field; ApiError names the first problem."""
    try:
        spec = CompetitionSpec().load(json.loads(json.dumps(raw, default=str)))
    except ValidationError as exc:
        raise ApiError(
            f"the spec is invalid: {first_problem(exc.messages)}",
            code="invalid_spec",
            status=422,
            details=exc.messages,
        ) from exc
    return spec


def file_key(name: str, *, in_folder: bool = False) -> str:
    """The name a spec gives an uploaded file: its path relative to the spec's folder,
    with `/` (so that two rounds' `test.csv` in their own folders do not collide). A
    file picked with its folder (the browser sends `FOLDER/round1/test.csv`) loses the
    folder's own name."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if in_folder and len(parts) > 1:
        parts = parts[1:]
    if not parts or ".." in parts or name.startswith("/"):
        raise SpecError(f"{name!r} is not a path inside the spec's folder")
    return "/".join(parts)


def uploaded(parts: list[tuple[str, bytes]], *, in_folder: bool = False) -> dict[str, bytes]:
    """Uploaded files by the name the spec gives them; two with one name are refused."""
    files: dict[str, bytes] = {}
    for name, data in parts:
        key = file_key(name, in_folder=in_folder)
        if key in files:
            raise SpecError(f"two files are named {key!r}: keep them in folders of their own")
        files[key] = data
    return files


def template(now: datetime | None = None) -> str:
    """A spec to start from (docs/competitions.md has every field)."""
    now = (now or utcnow()).replace(microsecond=0)
    opens = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0)
    closes = opens + timedelta(days=30)
    return TEMPLATE.format(opens=isoformat(opens), closes=isoformat(closes))


TEMPLATE = """\
slug: my-challenge               # 2-63 of a-z, 0-9 and -
title: My challenge
description: |
  What to predict, from what, and how it is scored (Markdown).
visibility: private              # a draft: open it from the organiser's panel
team_size_limit: 3
rounds:
  - name: Round 1
    starts_at: {opens}
    ends_at: {closes}
    test_inputs: round1/test.csv # a CSV with an `id` column
    labels: round1/labels.csv    # `id,label`, one row per test id: never shown
    metric: accuracy             # accuracy, macro_f1, mse, rmse, mae, roc_auc, log_loss, custom
    daily_quota: 5
    total_quota: 100
    public_fraction: 0.5
    final_selections: 2
    publish_inputs: true         # participants download test.csv to predict it
    accepts: both                # files, models or both
"""


def create(
    organiser: User,
    spec: Mapping[str, Any],
    files: Mapping[str, bytes],
    store: ArtifactStore,
    public_key: str,
) -> Competition:
    """A competition from a validated spec (see docs/competitions.md) and its files."""
    require_organiser_level(organiser)
    if db.session.scalar(select(Competition.id).where(Competition.slug == spec["slug"])):
        raise Conflict(f"a competition {spec['slug']!r} exists already")
    competition = Competition(
        slug=spec["slug"],
        title=spec["title"],
        description=spec.get("description", ""),
        visibility=spec.get("visibility", "public"),
        team_size_limit=spec.get("team_size_limit", 1),
        organiser_id=organiser.id,
    )
    previous_end = None
    for number, round_spec in enumerate(spec["rounds"], start=1):
        what = f"round {number}"
        if round_spec.get("dataset"):
            version = dataset_service.find_version(organiser, round_spec["dataset"])  # exists
            if round_spec.get("dataset_sessions_only"):
                # Kept only if the whole competition is: a refusal rolls it back.
                dataset_service.mark_sessions_only(organiser, version.dataset)
        elif round_spec.get("dataset_sessions_only"):
            raise SpecError(f"{what}: dataset_sessions_only needs the round's dataset")
        round_ = Round(number=number, dataset=round_spec.get("dataset", ""))
        round_.split_salt = secrets.token_hex(8)
        _apply_round_fields(round_, round_spec, what)
        if previous_end is not None and round_.starts_at < previous_end:
            raise SpecError(f"{what}: it must start after round {number - 1} ends")
        previous_end = round_.ends_at
        _round_files(round_, round_spec, files, store, public_key, what)
        competition.rounds.append(round_)
    db.session.add(competition)
    db.session.commit()
    return competition


def competition_dict(competition: Competition) -> dict[str, Any]:
    return {
        "slug": competition.slug,
        "title": competition.title,
        "description": competition.description,
        "visibility": competition.visibility,
        "team_size_limit": competition.team_size_limit,
        "organiser": competition.organiser.username,
        "rounds": [round_dict(r) for r in competition.rounds],
    }
