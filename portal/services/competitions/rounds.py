"""A round's files (test inputs, sealed labels, scorer), its fields and their edits."""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grader.metrics import (  # pure numpy: the portal checks labels against it
    DEFAULT_TOLERANCE,
    METRICS,
)
from portal.errors import ApiError, Conflict, NotFound
from portal.extensions import db
from portal.models import Competition, Round, User
from portal.services import sealing, tables
from portal.services.artifacts import ArtifactStore
from portal.services.competitions.core import (
    CUSTOM,
    RoundState,
    SpecError,
    require_organiser,
    round_state,
)
from portal.timeutil import isoformat


def _file(files: Mapping[str, bytes], name: str, what: str) -> bytes:
    if name not in files:
        raise SpecError(f"{what}: the file {name!r} was not uploaded with the spec")
    return files[name]


def _store_bytes(store: ArtifactStore, data: bytes) -> str:
    digest, _ = store.put(io.BytesIO(data), max_bytes=len(data) + 1)
    return digest


def _round_files(
    round_: Round,
    spec: Mapping[str, Any],
    files: Mapping[str, bytes],
    store: ArtifactStore,
    public_key: str,
    what: str,
) -> None:
    """Check and store a round's test inputs, labels and scorer."""
    inputs = _file(files, spec["test_inputs"], what)
    ids = tables.read_inputs(inputs)
    round_.inputs_digest = _store_bytes(store, inputs)
    round_.ids_digest = _store_bytes(store, "\n".join(ids).encode())
    round_.rows = len(ids)
    set_labels(round_, _file(files, spec["labels"], what), store, public_key, ids=ids)
    if round_.metric == CUSTOM:
        scorer = _file(files, spec.get("scorer") or "", what + " (metric custom needs scorer)")
        try:
            compile(scorer, "scorer.py", "exec")
        except (SyntaxError, ValueError) as exc:
            raise SpecError(f"{what}: the scorer is not valid Python: {exc}") from exc
        round_.scorer_digest = _store_bytes(store, scorer)


def set_labels(
    round_: Round,
    labels: bytes,
    store: ArtifactStore,
    public_key: str,
    *,
    ids: list[str] | None = None,
) -> None:
    """Check labels against the round's ids and metric, then keep them sealed."""
    if not public_key:
        raise ApiError(
            "the grader's public key is not configured", code="misconfigured", status=500
        )
    ids = ids if ids is not None else read_ids(store, round_)
    metric = METRICS.get(round_.metric)
    tables.read_column(
        labels,
        ids,
        columns=tables.LABEL_COLUMNS,
        what="labels file",
        numeric=bool(metric and metric.numeric),
        binary=bool(metric and metric.binary),
    )
    round_.labels_digest = _store_bytes(store, sealing.seal(public_key, labels))


def published_inputs(round_: Round, store: ArtifactStore) -> Path:
    """The round's test inputs (ids and features, never labels), where the round
    publishes them for file submissions; who may see the competition may download."""
    if not round_.publish_inputs:
        where = (
            "train a model and submit a session's checkpoint"
            if round_.accepts == "models"
            else f"its inputs come with the dataset {round_.dataset}"
            if round_.dataset
            else "ask the organisers where its inputs are"
        )
        raise NotFound(f"round {round_.number} does not publish its test inputs: {where}")
    return store.path(round_.inputs_digest)


def read_ids(store: ArtifactStore, round_: Round) -> list[str]:
    return store.path(round_.ids_digest).read_text().split("\n")


def _apply_round_fields(round_: Round, spec: Mapping[str, Any], what: str) -> None:
    for key in (
        "name",
        "starts_at",
        "ends_at",
        "daily_quota",
        "total_quota",
        "public_fraction",
        "final_selections",
        "advance_top",
        "time_limit_s",
        "memory_mb",
        "publish_inputs",
        "accepts",
    ):
        if key in spec:
            value = spec[key]
            if isinstance(value, datetime) and value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)  # stored as naive UTC
            setattr(round_, key, value)
    if "metric" in spec:
        if spec["metric"] != CUSTOM and spec["metric"] not in METRICS:
            raise SpecError(f"{what}: no metric {spec['metric']!r}")
        round_.metric = spec["metric"]
        if spec["metric"] == CUSTOM:
            if spec.get("higher_is_better") is None:
                raise SpecError(f"{what}: a custom metric needs higher_is_better")
            round_.higher_is_better = spec["higher_is_better"]
        else:
            round_.higher_is_better = METRICS[spec["metric"]].higher_is_better
    elif "higher_is_better" in spec:
        if round_.metric != CUSTOM:
            better = "higher" if round_.higher_is_better else "lower"
            raise SpecError(
                f"{what}: with {round_.metric}, {better} is better; only a custom metric "
                "chooses its direction"
            )
        round_.higher_is_better = spec["higher_is_better"]
    _apply_tolerance(round_, spec, what)
    if not 0 < round_.public_fraction <= 1:
        raise SpecError(f"{what}: the public share of the rows is above 0 and at most 1")
    if round_.ends_at <= round_.starts_at:
        raise SpecError(f"{what}: it must end after it starts")


def _apply_tolerance(round_: Round, spec: Mapping[str, Any], what: str) -> None:
    """A metric that takes a tolerance has one (1 degree unless given); others none."""
    metric = METRICS.get(round_.metric)
    takes = bool(metric and metric.tolerance)
    given = spec.get("tolerance")
    if given is not None:
        if not takes:
            raise SpecError(f"{what}: {round_.metric} takes no tolerance")
        if not (isinstance(given, int | float) and 0 <= given <= 180):
            raise SpecError(f"{what}: the tolerance is an angle from 0 to 180, not {given!r}")
        round_.tolerance = float(given)
    elif not takes:
        round_.tolerance = None
    elif round_.tolerance is None:
        round_.tolerance = DEFAULT_TOLERANCE


def edit_round(
    user: User,
    competition: Competition,
    round_: Round,
    changes: Mapping[str, Any],
) -> bool:
    """Change a round. Before it starts, anything; once started, what is safe for the
    submissions made: its end, its quotas, and its metric (every submission is then
    scored again); once ended, only the metric. Returns whether scores must be
    recomputed."""
    require_organiser(user, competition)
    changes = {
        key: value
        for key, value in changes.items()
        if (value is not None or key == "advance_top") and not _unchanged(round_, key, value)
    }
    state = round_state(round_)
    if state != RoundState.UPCOMING:
        allowed = AFTER_START if state == RoundState.OPEN else {"metric", "higher_is_better"}
        late = sorted(set(changes) - allowed)
        if late:
            raise Conflict(
                f"round {round_.number} is {state}: only its "
                f"{', '.join(sorted(allowed - {'higher_is_better'}))} or labels can change, "
                f"not {', '.join(late)}"
            )
    if changes.get("metric") == CUSTOM and "higher_is_better" not in changes:
        changes["higher_is_better"] = round_.higher_is_better  # kept as it is

    if changes.get("metric") == CUSTOM and not round_.scorer_digest:
        raise SpecError("a custom metric needs a scorer: upload it when creating the round")
    if changes.get("metric") not in (None, CUSTOM):
        changes.pop("higher_is_better", None)
    rescore = bool({"metric", "tolerance", "higher_is_better"} & set(changes))
    # Rounds follow one another: none may overlap its neighbours (checked before any
    # change is made).
    starts = _naive(changes.get("starts_at", round_.starts_at))
    ends = _naive(changes.get("ends_at", round_.ends_at))
    before = next((r for r in competition.rounds if r.number == round_.number - 1), None)
    after = next((r for r in competition.rounds if r.number == round_.number + 1), None)
    if before is not None and starts < before.ends_at:
        raise SpecError(f"round {round_.number} must start after round {before.number} ends")
    if after is not None and ends > after.starts_at:
        raise SpecError(f"round {round_.number} must end before round {after.number} starts")
    _apply_round_fields(round_, changes, f"round {round_.number}")
    if rescore:
        round_.revision += 1
    db.session.commit()
    return rescore


def _naive(moment: datetime) -> datetime:
    """A moment as stored: naive UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _unchanged(round_: Round, key: str, value: Any) -> bool:
    """Whether `value` is what the round has already (a form sends every field)."""
    current = getattr(round_, key, None)
    if isinstance(value, datetime) and isinstance(current, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        # Pages and the API show moments to the second.
        return value.replace(microsecond=0) == current.replace(microsecond=0)
    if isinstance(value, float) and isinstance(current, float):
        return abs(value - current) < 1e-12
    return bool(value == current)


# What may change once a round has started: nothing participants already relied on
# (its start, the split, the kind of submissions) but its end, quotas and metric.
AFTER_START = {
    "ends_at",
    "daily_quota",
    "total_quota",
    "metric",
    "tolerance",
    "higher_is_better",
}


def round_dict(round_: Round) -> dict[str, Any]:
    return {
        "number": round_.number,
        "name": round_.name,
        "state": round_state(round_),
        "starts_at": isoformat(round_.starts_at),
        "ends_at": isoformat(round_.ends_at),
        "dataset": round_.dataset,
        "metric": round_.metric,
        "tolerance": round_.tolerance,
        "higher_is_better": round_.higher_is_better,
        "rows": round_.rows,
        "daily_quota": round_.daily_quota,
        "total_quota": round_.total_quota,
        "public_fraction": round_.public_fraction,
        "final_selections": round_.final_selections,
        "advance_top": round_.advance_top,
        "time_limit_s": round_.time_limit_s,
        "memory_mb": round_.memory_mb,
        "publish_inputs": round_.publish_inputs,
        "accepts": round_.accepts,
    }
