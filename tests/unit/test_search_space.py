"""A search's spec and its decisions, without the database."""

from __future__ import annotations

import random

import pytest

from portal.services import search_space
from portal.services.search_space import InvalidSpec, Past, parse_spec

SPACE = {
    "lr": {"loguniform": [0.001, 0.5]},
    "hidden": {"int": [16, 128]},
    "act": {"choice": ["relu", "tanh"]},
}


def spec(**fields):
    body = {"metric": "valid/acc", "search": SPACE, "budget": {"sessions": 8}, **fields}
    return parse_spec(body)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"search": {}}, "the search space is empty"),
        ({"algorithm": "annealing"}, "unknown algorithm 'annealing'"),
        ({"budget": {"sessions": 0}}, "budget.sessions must be above 0"),
        ({"budget": {}}, "budget: give sessions, gpu_hours or minutes"),
        ({"budget": {"epochs": 3}}, "budget: unknown 'epochs'"),
        ({"search": {"lr": {"uniform": [1, 0.1]}}}, "lr: low (1) must be below high (0.1)"),
        ({"search": {"lr": {"loguniform": [0, 1]}}}, "loguniform needs low above 0"),
        ({"search": {"lr": {"normal": [0, 1]}}}, "unknown kind 'normal'"),
        ({"search": {"lr": {"int": [0.5, 3]}}}, "lr's low must be a whole number"),
        ({"search": {"--lr": {"int": [1, 3]}}}, "reads like an option"),
        ({"search": {"a": {"choice": [1, 1]}}}, "a choice is listed twice"),
        ({"metric": ""}, "metric: the tag the script reports"),
        ({"direction": "up"}, "direction is max or min"),
        ({"args": "--lr 0.1"}, "--lr is both a fixed argument and searched"),
        ({"args": "'unclosed"}, "args: No closing quotation"),
        ({"parallel": 0}, "parallel must be above 0"),
        ({"algorithm": "pbt", "parallel": 1}, "parallel is the population, at least 2"),
        ({"algorithm": "random", "pbt": {"interval": 2}}, "options for the pbt algorithm"),
        ({"algorithm": "asha", "asha": {"eta": 1}}, "asha.eta is at least 2"),
        ({"algorithm": "pbt", "parallel": 4, "pbt": {"quantile": 0.6}}, "at most 0.5"),
        ({"algorithm": "grid"}, "a grid takes choice and int parameters; lr is loguniform"),
        ({"seeds": 3}, "unknown field 'seeds'"),
        ({"algorithm": "pbt", "parallel": 2, "pbt": {"interval": 5, "steps": 5}}, "above"),
        (
            {"algorithm": "pbt", "parallel": 2, "args": "--epochs 3"},
            "--epochs is set by the search (pbt's steps)",
        ),
        (
            {"algorithm": "pbt", "parallel": 2, "pbt": {"steps_arg": "lr"}},
            "--lr is set by the search, not searched",
        ),
    ],
)
def test_a_bad_spec_is_refused_with_what_is_wrong(body, says):
    with pytest.raises(InvalidSpec) as refused:
        spec(**body)
    assert says in refused.value.message
    assert refused.value.message.startswith("search spec: ")


def test_a_spec_survives_being_stored():
    given = spec(algorithm="asha", asha={"min_steps": 2, "eta": 2, "max_steps": 16}, parallel=3)
    again = search_space.spec_from_dict(given.as_dict())
    assert again == given
    assert search_space.rung_steps(again) == [2, 4, 8, 16]
    assert search_space.rung_steps(spec(algorithm="asha", asha={"eta": 3})) == [1, 3, 9, 27]


def test_trial_arguments_follow_the_fixed_ones():
    given = spec(args="--epochs 20")
    args = search_space.command_args(given, {"lr": 0.0123456789, "hidden": 64, "act": "tanh"})
    assert args == "--epochs 20 --lr 0.0123457 --hidden 64 --act tanh"
    segment = spec(algorithm="pbt", parallel=2, pbt={"interval": 3, "steps_arg": "iters"})
    assert segment.steps == 12  # four intervals unless said
    args = search_space.command_args(segment, {"lr": 0.5, "hidden": 8, "act": "relu"}, until=6)
    assert args == "--lr 0.5 --hidden 8 --act relu --iters 6"
    assert search_space.spec_from_dict(segment.as_dict()) == segment


def test_a_grid_visits_every_point_once_then_ends():
    given = parse_spec(
        {
            "algorithm": "grid",
            "metric": "m",
            "search": {"a": {"choice": ["x", "y"]}, "b": {"int": [1, 3]}},
            "budget": {"sessions": 100},
        }
    )
    past: list[Past] = []
    seen = []
    while (point := search_space.next_params(given, past)) is not None:
        seen.append((point["a"], point["b"]))
        past.append(Past(point, 1.0))
    assert sorted(seen) == [(a, b) for a in "xy" for b in (1, 2, 3)]
    assert search_space.grid_size(given) == 6


def test_random_draws_stay_in_the_space_and_differ_per_trial():
    given = spec(algorithm="random")
    past: list[Past] = []
    for _ in range(20):
        point = search_space.next_params(given, past)
        assert point is not None
        assert 0.001 <= point["lr"] <= 0.5 and isinstance(point["lr"], float)
        assert 16 <= point["hidden"] <= 128 and isinstance(point["hidden"], int)
        assert point["act"] in ("relu", "tanh")
        past.append(Past(point))
    assert len({p.params["lr"] for p in past}) == 20
    # The same search draws the same sequence again (seeded by the search and trial).
    assert search_space.next_params(given, []) == past[0].params


def test_tpe_samples_near_what_scored_best():
    """Past the random start-up trials, TPE's draws of x crowd where the objective peaks
    (x = 0.8): their distance from it is well under that of random draws'."""

    def late_distance(algorithm: str) -> float:
        given = parse_spec(
            {
                "algorithm": algorithm,
                "metric": "m",
                "search": {"x": {"uniform": [0.0, 1.0]}},
                "budget": {"sessions": 40},
            }
        )
        past: list[Past] = []
        for _ in range(30):
            point = search_space.next_params(given, past)
            assert point is not None
            past.append(Past(point, -((point["x"] - 0.8) ** 2)))
        late = [abs(p.params["x"] - 0.8) for p in past[15:]]
        return sum(late) / len(late)

    tpe, drawn = late_distance("tpe"), late_distance("random")
    assert tpe < 0.6 * drawn, (tpe, drawn)


def test_asha_promotes_the_top_third_from_the_highest_rung_down():
    given = spec(algorithm="asha", asha={"min_steps": 1, "eta": 3, "max_steps": 9})
    # Fewer than eta at a rung: nobody goes on, a new configuration starts.
    assert search_space.promotion(given, [{0: 0.5, 1: 0.9}, {}, {}], set()) is None
    bottom = {0: 0.5, 1: 0.9, 2: 0.7, 3: 0.6, 4: 0.2, 5: 0.8}  # six: the top two go on
    assert search_space.promotion(given, [bottom, {}, {}], set()) == (1, 0)
    assert search_space.promotion(given, [bottom, {}, {}], {(1, 0)}) == (5, 0)
    assert search_space.promotion(given, [bottom, {}, {}], {(1, 0), (5, 0)}) is None
    # A higher rung first; the top rung is where training ends.
    middle = {1: 0.95, 5: 0.85, 7: 0.9}
    assert search_space.promotion(given, [bottom, middle, {}], {(1, 0), (5, 0)}) == (1, 1)
    assert search_space.promotion(given, [{}, {}, {1: 0.99, 2: 0.9, 3: 0.8}], set()) is None
    lower = spec(algorithm="asha", direction="min", asha={"max_steps": 9})
    assert search_space.promotion(lower, [bottom, {}, {}], set()) == (4, 0)


def test_pbt_ranks_the_population_and_perturbs_a_copy():
    given = spec(algorithm="pbt", parallel=4, pbt={"quantile": 0.25, "resample": 1.0})
    bottom, top = search_space.bottom_and_top(given, {0: 0.9, 1: 0.5, 2: 0.7, 3: 0.8})
    assert bottom == {1} and top == [0]
    rng = random.Random(1)
    for _ in range(50):
        changed = search_space.explore(given, {"lr": 0.5, "hidden": 16, "act": "relu"}, rng)
        assert changed["lr"] in (0.4, 0.5)  # x0.8, or x1.2 kept at the high end
        assert changed["hidden"] in (17, 19)  # 16*1.2 rounds to 19; 16*0.8 stays, so +1
        assert changed["act"] in ("relu", "tanh")
