"""Comparing sessions: who may, what lines come back, how arguments line up."""

import pytest

from portal.errors import ApiError, NotFound
from portal.models import Level
from portal.services import compare, metrics
from tests import factories


def test_arguments_shared_once_and_differences_as_a_matrix(app):
    ada = factories.user("ada")
    runs = []
    for args in ("--lr 0.1 --epochs 3 --amp", "--lr=0.01 --epochs 3 --amp", "--epochs 3 -v x.csv"):
        run = factories.session(ada)
        run.args = args
        runs.append(run)
    table = compare.arguments(runs)
    assert table["shared"] == {"epochs": "3"}
    assert table["differing"] == ["amp", "lr", "v"]
    assert [row["values"] for row in table["rows"]] == [
        {"amp": "true", "lr": "0.1", "v": ""},
        {"amp": "true", "lr": "0.01", "v": ""},
        {"amp": "", "lr": "", "v": "x.csv"},
    ]


def test_parse_arguments_reads_negative_numbers_and_malformed_strings():
    assert compare.parse_arguments("--lr -0.5 --shift -3 --flag") == {
        "lr": "-0.5",
        "shift": "-3",
        "flag": "true",
    }
    assert compare.parse_arguments("--name 'unclosed") == {"_args": "--name 'unclosed"}


def test_only_visible_sessions_and_at_most_a_hundred(app):
    ada, eve = factories.user("ada"), factories.user("eve", level=Level.USER)
    mine = factories.session(ada)
    theirs = factories.session(eve)
    metrics.record(mine, {"events": [{"tag": "loss", "step": 1, "value": 2.0, "wall_time": 1}]})
    assert [line["session"] for line in compare.lines([mine], "loss")] == [mine.ident]
    with pytest.raises(NotFound):
        compare.resolve(ada, [mine.ident, theirs.ident])
    with pytest.raises(ApiError, match="at most 100"):
        compare.resolve(ada, [f"ada/{n}" for n in range(200)])
    with pytest.raises(ApiError, match="name the sessions"):
        compare.resolve(ada, [" ", ""])
