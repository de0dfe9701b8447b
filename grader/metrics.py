"""Scoring metrics in plain numpy: `METRICS[name](labels, predictions) -> float`.

Classification metrics (`accuracy`, `macro_f1`) compare labels as given, strings or
numbers. `roc_auc` and `log_loss` are binary: labels 0/1, predictions the probability of
class 1. Regression metrics take numbers. Each is checked against scikit-learn in the
tests. NSML's competitions' own: `accuracy_within` (angles in degrees: the share of
predictions within a tolerance of the label, the shorter way round the circle) and
`token_f1` (text: each row's F1 over its whitespace-separated tokens, averaged), checked
against hand-computed examples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(labels == predictions))


def macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """F1 per class over the classes in either array, averaged without weights."""
    classes, inverse = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    truth, guess = inverse[: len(labels)], inverse[len(labels) :]
    k = len(classes)
    true_positive = np.bincount(truth[truth == guess], minlength=k).astype(float)
    predicted = np.bincount(guess, minlength=k).astype(float)
    actual = np.bincount(truth, minlength=k).astype(float)
    denominator = predicted + actual
    f1 = np.divide(
        2 * true_positive, denominator, out=np.zeros(k), where=denominator > 0
    )  # a class never predicted nor present scores 0, as scikit-learn's zero_division=0
    return float(f1.mean())


def mse(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean((labels - predictions) ** 2))


def rmse(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.sqrt(mse(labels, predictions)))


def mae(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(np.abs(labels - predictions)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # ranks start..end-1 (from 0) -> mean, from 1
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U), ties counted as half."""
    positive = labels == 1
    n_pos = int(positive.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both classes among the labels")
    ranks = _average_ranks(predictions.astype(float))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Binary cross-entropy; probabilities clipped away from 0 and 1 as scikit-learn does."""
    eps = np.finfo(np.float64).eps
    p = np.clip(predictions.astype(float), eps, 1 - eps)
    y = labels.astype(float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


FULL_TURN = 360.0


def accuracy_within(labels: np.ndarray, predictions: np.ndarray, tolerance: float = 1.0) -> float:
    """The share of predicted angles (degrees) within `tolerance` of the label, measured
    the shorter way round: 359 is 2 from 1."""
    if not tolerance >= 0:
        raise ValueError(f"the tolerance is an angle of 0 or more, not {tolerance}")
    apart = np.abs(labels - predictions) % FULL_TURN
    return float(np.mean(np.minimum(apart, FULL_TURN - apart) <= tolerance))


def token_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Per row, F1 of the predicted tokens against the label's (whitespace-separated,
    as written; a token counts as often as it appears in both), averaged over rows. Two
    empty texts agree (1); one empty text scores 0."""
    total = 0.0
    for truth, guess in zip(labels.tolist(), predictions.tolist(), strict=True):
        wanted, given = Counter(str(truth).split()), Counter(str(guess).split())
        if not wanted or not given:
            total += float(not wanted and not given)
            continue
        common = sum((wanted & given).values())
        if common:
            precision, recall = common / sum(given.values()), common / sum(wanted.values())
            total += 2 * precision * recall / (precision + recall)
    return total / len(labels) if len(labels) else 0.0


@dataclass(frozen=True)
class Metric:
    name: str
    function: Callable[..., float]
    higher_is_better: bool
    numeric: bool  # labels and predictions are numbers (else compared as given)
    binary: bool = False  # labels must be 0 or 1, predictions probabilities
    text: bool = False  # compared as the text written, never read as numbers
    tolerance: bool = False  # takes the round's `tolerance`


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", accuracy, higher_is_better=True, numeric=False),
        Metric("macro_f1", macro_f1, higher_is_better=True, numeric=False),
        Metric("mse", mse, higher_is_better=False, numeric=True),
        Metric("rmse", rmse, higher_is_better=False, numeric=True),
        Metric("mae", mae, higher_is_better=False, numeric=True),
        Metric("roc_auc", roc_auc, higher_is_better=True, numeric=True, binary=True),
        Metric("log_loss", log_loss, higher_is_better=False, numeric=True, binary=True),
        Metric(
            "accuracy_within", accuracy_within, higher_is_better=True, numeric=True, tolerance=True
        ),
        Metric("token_f1", token_f1, higher_is_better=True, numeric=False, text=True),
    )
}
DEFAULT_TOLERANCE = 1.0  # degrees: NSML's rotation-angle competition
