"""Scoring a submission: predictions against the hidden labels, on the public and the
private rows of the round.

The labels are opened with the grader's secret key and kept in memory per round
revision, aligned to the round's ids, with the public/private split; a worker scores
the next file of the same round without reading them again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grader import sandbox
from grader.metrics import DEFAULT_TOLERANCE, METRICS
from portal.models import Round
from portal.services import sealing, tables
from portal.services.artifacts import ArtifactStore
from portal.services.competitions import core, rounds

log = logging.getLogger(__name__)

SCORER_TIME_LIMIT_S = 60
SCORER_MEMORY_BYTES = 2 * 1024**3


class ScoringError(Exception):
    """The submission cannot be scored: the message says why, for its team."""


@dataclass
class Truth:
    ids: list[str]
    labels: list[str]
    public: np.ndarray  # boolean mask over ids
    numeric: np.ndarray | None  # labels as floats, for numeric metrics
    classes: np.ndarray | None = None  # labels as compared by classification metrics


_truths: dict[tuple[int, int, str], Truth] = {}


def key_file() -> Path:
    path = os.environ.get("PODIUM_GRADER_KEY_FILE")
    if not path:
        raise RuntimeError("PODIUM_GRADER_KEY_FILE is not set: the grader cannot open labels")
    return Path(path)


def truth(round_: Round, store: ArtifactStore) -> Truth:
    cache_key = (round_.id, round_.revision, round_.labels_digest)
    if cache_key in _truths:
        return _truths[cache_key]
    ids = rounds.read_ids(store, round_)
    labels = sealing.unseal(key_file(), store.path(round_.labels_digest).read_bytes())
    metric = METRICS.get(round_.metric)
    values = tables.read_column(
        labels,
        ids,
        columns=tables.LABEL_COLUMNS,
        what="labels file",
        numeric=bool(metric and metric.numeric),
    )
    order = sorted(range(len(ids)), key=lambda i: core.split_key(round_.split_salt, ids[i]))
    public = np.zeros(len(ids), dtype=bool)
    public[order[: max(1, round(round_.public_fraction * len(ids)))]] = True
    numeric = np.array(values, dtype=float) if metric and metric.numeric else None
    classes = None if numeric is not None else _normalise(values, metric)
    result = Truth(ids, values, public, numeric, classes)
    for stale in [k for k in _truths if k[0] == round_.id]:
        del _truths[stale]
    _truths[cache_key] = result
    return result


def _score(round_: Round, store: ArtifactStore, labels, predictions) -> float:
    if round_.metric == core.CUSTOM:
        return run_scorer(store.path(round_.scorer_digest), list(labels), list(predictions))
    metric = METRICS[round_.metric]
    options = {}
    if metric.tolerance:
        options["tolerance"] = (
            DEFAULT_TOLERANCE if round_.tolerance is None else float(round_.tolerance)
        )
    try:
        value = metric.function(labels, predictions, **options)
    except ValueError as exc:
        raise ScoringError(str(exc)) from exc
    if not np.isfinite(value):
        raise ScoringError(f"the {round_.metric} of these predictions is not a finite number")
    return value


def score(round_: Round, store: ArtifactStore, data: bytes) -> tuple[float, float]:
    """(public score, private score); the private one over all rows when every row is
    public."""
    known = truth(round_, store)
    metric = METRICS.get(round_.metric)
    try:
        values = tables.read_column(
            data,
            known.ids,
            columns=tables.PREDICTION_COLUMNS,
            what="predictions file",
            numeric=bool(metric and metric.numeric),
            probabilities=bool(metric and metric.binary),
        )
    except tables.TableError as exc:
        raise ScoringError(exc.message) from exc
    if known.numeric is not None:
        labels: np.ndarray = known.numeric
        predictions: np.ndarray = np.array(values, dtype=float)
    else:
        assert known.classes is not None
        labels, predictions = known.classes, _normalise(values, metric)
        if labels.dtype.kind != predictions.dtype.kind:
            # Numbers against text: compare both as text.
            labels, predictions = np.array(known.labels), np.array(values)
    public = _score(round_, store, labels[known.public], predictions[known.public])
    private_mask = ~known.public if (~known.public).any() else known.public
    private = _score(round_, store, labels[private_mask], predictions[private_mask])
    return public, private


def _normalise(values: list[str], metric=None) -> np.ndarray:
    """Numbers written differently ("1" and "1.0") are the same class; text metrics
    compare the text as written."""
    if metric is not None and metric.text:
        return np.array(values, dtype=object)
    try:
        return np.array(values, dtype=float)
    except ValueError:
        return np.array(values)


# Custom scorers ------------------------------------------------------------------------

# The scorer's own prints go to its stderr with its errors: stdout carries the score alone.
_RUNNER = """
import json, os
result = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
namespace = {"__name__": "scorer"}
exec(compile(open("scorer.py").read(), "scorer.py", "exec"), namespace)
data = json.load(open("input.json"))
value = float(namespace["score"](data["labels"], data["predictions"]))
json.dump({"score": value}, result)
result.close()
"""


def run_scorer(scorer: Path, labels: list, predictions: list) -> float:
    """An organiser's `score(labels, predictions) -> float`, isolated from the grader in a
    sandbox (`grader.sandbox`): no network, no access to the grader's environment, key
    or database, an empty environment, Python's isolated mode, limits on CPU time,
    memory, file size, open files and processes, and a wall-clock timeout. It receives
    this round's labels and predictions only, as lists of the CSV cells (strings)."""
    files = {
        "scorer.py": scorer.read_bytes(),
        "input.json": json.dumps(
            {"labels": [str(v) for v in labels], "predictions": [str(v) for v in predictions]}
        ).encode(),
    }
    limits = sandbox.Limits(cpu_s=SCORER_TIME_LIMIT_S, memory_bytes=SCORER_MEMORY_BYTES)
    try:
        done = sandbox.run(_RUNNER, files, limits)
    except sandbox.SandboxError as exc:
        raise ScoringError(str(exc)) from exc
    # Past its CPU time a scorer gets SIGXCPU, then SIGKILL if it ignored that.
    cpu_spent = done.exit_code in (-signal.SIGXCPU, -signal.SIGKILL) and not done.out_of_memory
    if done.timed_out or cpu_spent:
        raise ScoringError(
            f"the competition's scorer ran out of time ({SCORER_TIME_LIMIT_S} s of CPU, "
            f"{limits.wall_s:g} s in all)"
        )
    if done.out_of_memory:
        raise ScoringError(
            f"the competition's scorer ran out of memory ({SCORER_MEMORY_BYTES // 1024**2} MiB)"
        )
    if done.exit_code != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise ScoringError(f"the competition's scorer failed: {last[:300]}")
    try:
        value = float(json.loads(done.stdout)["score"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ScoringError("the competition's scorer returned no number") from exc
    if not np.isfinite(value):
        raise ScoringError("the competition's scorer returned a value that is not finite")
    return value
