import numpy as np
import pytest
from sklearn import metrics as sk

from grader.metrics import METRICS

RNG = np.random.default_rng(7)


def _classes(n, k):
    return RNG.integers(0, k, n), RNG.integers(0, k, n)


@pytest.mark.parametrize("trial", range(20))
def test_classification_metrics_match_scikit_learn(trial):
    n, k = int(RNG.integers(1, 300)), int(RNG.integers(2, 12))
    labels, predictions = _classes(n, k)
    assert METRICS["accuracy"].function(labels, predictions) == pytest.approx(
        sk.accuracy_score(labels, predictions)
    )
    assert METRICS["macro_f1"].function(labels, predictions) == pytest.approx(
        sk.f1_score(labels, predictions, average="macro", zero_division=0)
    )


def test_classification_metrics_take_strings():
    labels = np.array(["cat", "dog", "dog", "eel"])
    predictions = np.array(["cat", "dog", "cat", "fox"])
    assert METRICS["accuracy"].function(labels, predictions) == 0.5
    assert METRICS["macro_f1"].function(labels, predictions) == pytest.approx(
        sk.f1_score(labels, predictions, average="macro", zero_division=0)
    )


@pytest.mark.parametrize("trial", range(20))
def test_regression_metrics_match_scikit_learn(trial):
    n = int(RNG.integers(1, 500))
    labels, predictions = RNG.normal(size=n) * 10, RNG.normal(size=n) * 10
    assert METRICS["mse"].function(labels, predictions) == pytest.approx(
        sk.mean_squared_error(labels, predictions)
    )
    assert METRICS["rmse"].function(labels, predictions) == pytest.approx(
        np.sqrt(sk.mean_squared_error(labels, predictions))
    )
    assert METRICS["mae"].function(labels, predictions) == pytest.approx(
        sk.mean_absolute_error(labels, predictions)
    )


@pytest.mark.parametrize("trial", range(20))
def test_binary_metrics_match_scikit_learn(trial):
    n = int(RNG.integers(2, 400))
    labels = RNG.integers(0, 2, n)
    labels[:2] = [0, 1]
    # Rounded so that ties happen: they must count as scikit-learn counts them.
    probabilities = np.round(RNG.random(n), int(RNG.integers(1, 4)))
    probabilities[:3] = [0.0, 1.0, 0.5]  # log loss clips the extremes
    assert METRICS["roc_auc"].function(labels, probabilities) == pytest.approx(
        sk.roc_auc_score(labels, probabilities)
    )
    assert METRICS["log_loss"].function(labels, probabilities) == pytest.approx(
        sk.log_loss(labels, probabilities, labels=[0, 1])
    )


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        METRICS["roc_auc"].function(np.ones(5), RNG.random(5))


def test_directions():
    assert {n for n, m in METRICS.items() if m.higher_is_better} == {
        "accuracy",
        "macro_f1",
        "roc_auc",
    }
