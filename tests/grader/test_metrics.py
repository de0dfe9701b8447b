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
        "accuracy_within",
        "token_f1",
    }


def test_accuracy_within_wraps_around_the_circle():
    within = METRICS["accuracy_within"].function
    labels = np.array([0.0, 359.5, 90.0, 180.0, 10.0, 270.0])
    predictions = np.array([359.2, 0.4, 91.0, 178.5, 370.9, -90.0])
    # 0 vs 359.2: 0.8 apart (the short way); 359.5 vs 0.4: 0.9; 90 vs 91: 1.0 (the
    # boundary counts); 180 vs 178.5: 1.5; 10 vs 370.9 (= 10.9): 0.9; 270 vs -90: 0.
    assert within(labels, predictions, tolerance=1.0) == pytest.approx(5 / 6)
    assert within(labels, predictions, tolerance=0.5) == pytest.approx(1 / 6)
    assert within(labels, predictions, tolerance=2.0) == 1.0
    assert within(np.array([0.0]), np.array([180.0]), tolerance=179.9) == 0.0
    with pytest.raises(ValueError, match="0 or more"):
        within(labels, predictions, tolerance=-1.0)


def test_token_f1_against_hand_computed_rows():
    f1 = METRICS["token_f1"].function
    labels = np.array(
        ["the quick brown fox", "hello world", "a a b", "", "", "keyboard"], dtype=object
    )
    predictions = np.array(
        ["the quick brwn fox", "hello world", "a b b", "", "x", "keybaord"], dtype=object
    )
    # Row 1: 3 of 4 tokens in common: P = R = 3/4, F1 = 0.75. Row 2: 1. Row 3: the
    # multisets {a, a, b} and {a, b, b} share {a, b}: P = R = 2/3. Row 4: both empty: 1.
    # Row 5: one empty: 0. Row 6: nothing in common: 0.
    expected = (0.75 + 1 + 2 / 3 + 1 + 0 + 0) / 6
    assert f1(labels, predictions) == pytest.approx(expected)
    # Precision and recall differ: "new york city" against "new york": P = 1, R = 2/3.
    assert f1(np.array(["new york city"]), np.array(["new york"])) == pytest.approx(0.8)
    assert METRICS["token_f1"].text and not METRICS["token_f1"].numeric
