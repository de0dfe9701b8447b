import pytest

from grader.scoring import ScoringError, run_scorer


def test_a_custom_scorer_gets_strings_and_returns_a_number(tmp_path):
    scorer = tmp_path / "score.py"
    scorer.write_text(
        "import os\n"
        "def score(labels, predictions):\n"
        "    assert os.environ.get('PODIUM_GRADER_KEY_FILE') is None  # nothing inherited\n"
        "    assert not os.listdir('.') or set(os.listdir('.')) <= {'scorer.py', 'input.json'}\n"
        "    return sum(a == b for a, b in zip(labels, predictions)) / len(labels)\n"
    )
    assert run_scorer(scorer, ["1", "2", "3", "4"], ["1", "2", "0", "4"]) == 0.75


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def score(labels, predictions):\n    return 1 / 0\n", "ZeroDivisionError"),
        ("def score(labels, predictions):\n    return 'high'\n", "failed: ValueError"),
        ("def score(labels, predictions):\n    return float('nan')\n", "not finite"),
        ("x = [0] * (4 * 1024**3)\n", "MemoryError"),
    ],
)
def test_a_failing_scorer_fails_the_submission_with_its_reason(tmp_path, body, message):
    scorer = tmp_path / "score.py"
    scorer.write_text(body)
    with pytest.raises(ScoringError, match=message):
        run_scorer(scorer, ["1"], ["1"])
