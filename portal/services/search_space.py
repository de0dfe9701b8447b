"""What a hyperparameter search is and how it decides, without the database: its spec
(read and checked), the next trial's hyperparameters (grid in order; random and TPE
through Optuna's samplers, the study rebuilt from the search's own trials), the ASHA
rule of promotion, and PBT's exploit and explore. `portal/services/searches.py` feeds it the
search's stored trials and carries the decisions out.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

from portal.errors import ApiError

ALGORITHMS = ("grid", "random", "tpe", "asha", "pbt")
KINDS = ("choice", "uniform", "loguniform", "int")
MAX_SESSIONS = 1000
MAX_PARALLEL = 64
MAX_GRID = 1000
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")  # a parameter: the script's --NAME
# TPE samples at random until this many trials ended (Optuna's default is 10; a search
# of 16 sessions would then be mostly random).
TPE_STARTUP = 5


class InvalidSpec(ApiError):
    def __init__(self, message: str):
        super().__init__(f"search spec: {message}", code="invalid_input")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # choice | uniform | loguniform | int
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def values(self) -> list[Any]:
        """The grid's values for it: choices, or every integer of an int range."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        raise InvalidSpec(f"a grid takes choice and int parameters; {self.name} is {self.kind}")

    def clip(self, value: float) -> Any:
        value = min(max(value, self.low), self.high)
        return round(value) if self.kind == "int" else float(value)


@dataclass(frozen=True)
class Spec:
    algorithm: str
    metric: str
    direction: str  # max | min
    space: tuple[Param, ...]
    args: str = ""
    parallel: int = 1
    sessions: int | None = None  # the budget: sessions started ...
    gpu_hours: float | None = None  # ... GPU-hours used ...
    minutes: float | None = None  # ... or wall time since it started
    seed: int = 0
    # ASHA: rungs at min_steps * eta^k steps, and at max_steps, where training ends
    min_steps: int = 1
    eta: int = 3
    max_steps: int = 27
    # PBT: every `interval` steps, up to `steps`, the bottom `quantile` of the population
    # takes a top member's checkpoint and perturbs its hyperparameters; each segment's
    # session is told where to stop with `--STEPS_ARG N`.
    interval: int = 5
    steps: int = 20
    steps_arg: str = "epochs"
    quantile: float = 0.25
    perturb: tuple[float, ...] = (0.8, 1.2)
    resample: float = 0.25
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def maximize(self) -> bool:
        return self.direction == "max"

    def as_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "metric": self.metric,
            "direction": self.direction,
            "space": {p.name: _param_dict(p) for p in self.space},
            "args": self.args,
            "parallel": self.parallel,
            "budget": {
                k: v
                for k, v in (
                    ("sessions", self.sessions),
                    ("gpu_hours", self.gpu_hours),
                    ("minutes", self.minutes),
                )
                if v is not None
            },
            "seed": self.seed,
            **(
                {
                    "asha": {
                        "min_steps": self.min_steps,
                        "eta": self.eta,
                        "max_steps": self.max_steps,
                        "steps_arg": self.steps_arg,
                    }
                }
                if self.algorithm == "asha"
                else {}
            ),
            **(
                {
                    "pbt": {
                        "interval": self.interval,
                        "steps": self.steps,
                        "steps_arg": self.steps_arg,
                        "quantile": self.quantile,
                        "perturb": list(self.perturb),
                        "resample": self.resample,
                    }
                }
                if self.algorithm == "pbt"
                else {}
            ),
        }


def _param_dict(param: Param) -> dict[str, Any]:
    if param.kind == "choice":
        return {"choice": list(param.choices)}
    low: Any = int(param.low) if param.kind == "int" else param.low
    high: Any = int(param.high) if param.kind == "int" else param.high
    return {param.kind: [low, high]}


def _number(value: Any, what: str, *, integer: bool = False, positive: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSpec(f"{what} must be a number, not {value!r}")
    if integer and value != int(value):
        raise InvalidSpec(f"{what} must be a whole number, not {value!r}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise InvalidSpec(f"{what} must be {'above 0' if positive else 'finite'}, not {value!r}")
    return int(value) if integer else float(value)


def parse_param(name: Any, body: Any) -> Param:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidSpec(f"a parameter's name reads like an option (lr, hidden), not {name!r}")
    if not isinstance(body, dict) or len(body) != 1:
        raise InvalidSpec(f"{name}: give one of {', '.join(KINDS)}, e.g. {{uniform: [0.1, 1]}}")
    ((kind, given),) = body.items()
    if kind not in KINDS:
        raise InvalidSpec(f"{name}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    if not isinstance(given, list) or not given:
        raise InvalidSpec(f"{name}: {kind} takes a list")
    if kind == "choice":
        if not all(isinstance(v, str | int | float | bool) for v in given):
            raise InvalidSpec(f"{name}: choices are strings or numbers")
        if len(set(map(repr, given))) != len(given):
            raise InvalidSpec(f"{name}: a choice is listed twice")
        return Param(name, kind, choices=tuple(given))
    if len(given) != 2:
        raise InvalidSpec(f"{name}: {kind} takes [low, high]")
    integer = kind == "int"
    low = _number(given[0], f"{name}'s low", integer=integer)
    high = _number(given[1], f"{name}'s high", integer=integer)
    if low >= high:
        raise InvalidSpec(f"{name}: low ({low:g}) must be below high ({high:g})")
    if kind == "loguniform" and low <= 0:
        raise InvalidSpec(f"{name}: loguniform needs low above 0")
    return Param(name, kind, low=low, high=high)


def parse_spec(body: Any) -> Spec:
    """The spec a client sent (`podium automl SPEC.yaml`, as JSON), checked whole."""
    if not isinstance(body, dict):
        raise InvalidSpec("a mapping of algorithm, metric, search, budget ...")
    known = {
        "algorithm",
        "metric",
        "direction",
        "search",
        "args",
        "parallel",
        "budget",
        "seed",
        "asha",
        "pbt",
    }
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidSpec(f"unknown field {unknown[0]!r}; known: {', '.join(sorted(known))}")
    algorithm = body.get("algorithm", "random")
    if algorithm not in ALGORITHMS:
        raise InvalidSpec(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    metric = body.get("metric")
    if not isinstance(metric, str) or not metric.strip() or len(metric) > 128:
        raise InvalidSpec("metric: the tag the script reports, e.g. valid/acc")
    direction = body.get("direction", "max")
    if direction not in ("max", "min"):
        raise InvalidSpec(f"direction is max or min, not {direction!r}")
    space_body = body.get("search")
    if not isinstance(space_body, dict) or not space_body:
        raise InvalidSpec("the search space is empty: give at least one parameter under search")
    space = tuple(parse_param(name, value) for name, value in space_body.items())
    args = body.get("args", "")
    if not isinstance(args, str):
        raise InvalidSpec("args: the script's fixed arguments, one string")
    try:
        fixed = shlex.split(args)
    except ValueError as exc:
        raise InvalidSpec(f"args: {exc}") from None
    for param in space:
        if f"--{param.name}" in fixed or any(a.startswith(f"--{param.name}=") for a in fixed):
            raise InvalidSpec(f"--{param.name} is both a fixed argument and searched")
    parallel = _number(body.get("parallel", 1), "parallel", integer=True, positive=True)
    if parallel > MAX_PARALLEL:
        raise InvalidSpec(f"parallel is at most {MAX_PARALLEL}")
    budget = body.get("budget")
    if not isinstance(budget, dict) or not budget:
        raise InvalidSpec("budget: give sessions, gpu_hours or minutes (one or several)")
    unknown = sorted(set(budget) - {"sessions", "gpu_hours", "minutes"})
    if unknown:
        raise InvalidSpec(f"budget: unknown {unknown[0]!r}; known: sessions, gpu_hours, minutes")
    sessions = (
        _number(budget["sessions"], "budget.sessions", integer=True, positive=True)
        if "sessions" in budget
        else None
    )
    if sessions is not None and sessions > MAX_SESSIONS:
        raise InvalidSpec(f"budget.sessions is at most {MAX_SESSIONS}")
    gpu_hours = (
        _number(budget["gpu_hours"], "budget.gpu_hours", positive=True)
        if "gpu_hours" in budget
        else None
    )
    minutes = (
        _number(budget["minutes"], "budget.minutes", positive=True) if "minutes" in budget else None
    )
    seed = _number(body.get("seed", 0), "seed", integer=True)
    options: dict[str, Any] = {}
    for section, fields in (
        ("asha", ("min_steps", "eta", "max_steps", "steps_arg")),
        ("pbt", ("interval", "steps", "steps_arg", "quantile", "perturb", "resample")),
    ):
        given = body.get(section)
        if given is None:
            continue
        if algorithm != section:
            raise InvalidSpec(f"{section}: options for the {section} algorithm, not {algorithm}")
        if not isinstance(given, dict):
            raise InvalidSpec(f"{section}: a mapping of {', '.join(fields)}")
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise InvalidSpec(f"{section}: unknown {unknown[0]!r}; known: {', '.join(fields)}")
        options.update(given)
    spec = Spec(
        algorithm=algorithm,
        metric=metric.strip(),
        direction=direction,
        space=space,
        args=args,
        parallel=parallel,
        sessions=sessions,
        gpu_hours=gpu_hours,
        minutes=minutes,
        seed=seed,
    )
    if algorithm == "asha":
        spec = _asha_options(spec, options)
    if algorithm == "pbt":
        spec = _pbt_options(spec, options)
    if algorithm == "grid":
        size = math.prod(len(p.values()) for p in space)
        if size > MAX_GRID:
            raise InvalidSpec(f"the grid has {size} points; at most {MAX_GRID}")
    if algorithm == "pbt" and parallel < 2:
        raise InvalidSpec("pbt: parallel is the population, at least 2")
    return spec


def _asha_options(spec: Spec, options: dict[str, Any]) -> Spec:
    min_steps = _number(options.get("min_steps", 1), "asha.min_steps", integer=True, positive=True)
    eta = _number(options.get("eta", 3), "asha.eta", integer=True, positive=True)
    if eta < 2:
        raise InvalidSpec("asha.eta is at least 2")
    max_steps = _number(
        options.get("max_steps", min_steps * eta**3), "asha.max_steps", integer=True, positive=True
    )
    if max_steps <= min_steps:
        raise InvalidSpec("asha.max_steps must be above asha.min_steps")
    steps_arg = _steps_arg(spec, options, "asha")
    return replace(spec, min_steps=min_steps, eta=eta, max_steps=max_steps, steps_arg=steps_arg)


def _steps_arg(spec: Spec, options: dict[str, Any], section: str) -> str:
    """The option that tells a segment's session where to stop (`--epochs N`)."""
    steps_arg = options.get("steps_arg", "epochs")
    if not isinstance(steps_arg, str) or not NAME.fullmatch(steps_arg):
        raise InvalidSpec(f"{section}.steps_arg: the option that says where to stop, e.g. epochs")
    if any(p.name == steps_arg for p in spec.space):
        raise InvalidSpec(f"{section}.steps_arg: --{steps_arg} is set by the search, not searched")
    fixed = shlex.split(spec.args)
    if f"--{steps_arg}" in fixed or any(a.startswith(f"--{steps_arg}=") for a in fixed):
        raise InvalidSpec(
            f"--{steps_arg} is set by the search ({section}'s steps): leave it out of args"
        )
    return steps_arg


def _pbt_options(spec: Spec, options: dict[str, Any]) -> Spec:
    interval = _number(options.get("interval", 5), "pbt.interval", integer=True, positive=True)
    steps = _number(options.get("steps", 4 * interval), "pbt.steps", integer=True, positive=True)
    if steps <= interval:
        raise InvalidSpec("pbt.steps (where training ends) must be above pbt.interval")
    steps_arg = _steps_arg(spec, options, "pbt")
    quantile = _number(options.get("quantile", 0.25), "pbt.quantile", positive=True)
    if quantile > 0.5:
        raise InvalidSpec("pbt.quantile is at most 0.5 (the bottom and top must not meet)")
    perturb = options.get("perturb", [0.8, 1.2])
    if not isinstance(perturb, list) or not perturb:
        raise InvalidSpec("pbt.perturb: a list of factors, e.g. [0.8, 1.2]")
    factors = tuple(_number(f, "pbt.perturb", positive=True) for f in perturb)
    resample = _number(options.get("resample", 0.25), "pbt.resample")
    if not 0 <= resample <= 1:
        raise InvalidSpec("pbt.resample is a probability, 0 to 1")
    return replace(
        spec,
        interval=interval,
        steps=steps,
        steps_arg=steps_arg,
        quantile=quantile,
        perturb=factors,
        resample=resample,
    )


def spec_from_dict(stored: dict[str, Any]) -> Spec:
    """A spec as `Spec.as_dict` stored it."""
    body = {k: v for k, v in stored.items() if k != "space"}
    body["search"] = stored["space"]
    return parse_spec(body)


def command_args(spec: Spec, params: dict[str, Any], until: int | None = None) -> str:
    """The script's arguments for one trial: the fixed ones, then `--NAME VALUE`, then for
    a PBT segment where it stops (`--epochs 6`)."""
    parts = [spec.args] if spec.args else []
    for param in spec.space:
        value = params[param.name]
        text = format(value, ".6g") if isinstance(value, float) else str(value)
        parts.append(f"--{param.name} {shlex.quote(text)}")
    if until is not None:
        parts.append(f"--{spec.steps_arg} {until}")
    return " ".join(parts)


# Choosing the next trial ---------------------------------------------------------------


@dataclass(frozen=True)
class Past:
    """A trial as a sampler sees it: its hyperparameters, and its value once it ended
    (None while it runs; `failed` when it ended without one)."""

    params: dict[str, Any]
    value: float | None = None
    failed: bool = False
    pruned: bool = False


def grid_point(spec: Spec, index: int) -> dict[str, Any] | None:
    """The grid's `index`-th point (in the order of the space), or None past its end."""
    points = itertools.product(*(p.values() for p in spec.space))
    point = next(itertools.islice(points, index, None), None)
    if point is None:
        return None
    return dict(zip((p.name for p in spec.space), point, strict=True))


def grid_size(spec: Spec) -> int:
    return math.prod(len(p.values()) for p in spec.space)


def next_params(spec: Spec, past: list[Past]) -> dict[str, Any] | None:
    """The next trial's hyperparameters, or None where there are no more (a grid)."""
    if spec.algorithm == "grid":
        return grid_point(spec, len(past))
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = _distributions(spec)
    seed = spec.seed * 100_003 + len(past)  # another draw for every trial, reproducibly
    if spec.algorithm == "tpe":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=TPE_STARTUP, constant_liar=True
        )
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(
        direction="maximize" if spec.maximize else "minimize", sampler=sampler
    )
    for trial in past:
        params = {k: v for k, v in trial.params.items() if k in distributions}
        if set(params) != set(distributions):
            continue
        if trial.value is not None and not trial.failed and not trial.pruned:
            state, value = TrialState.COMPLETE, trial.value
        elif trial.pruned:
            state, value = TrialState.PRUNED, None
        elif trial.failed:
            state, value = TrialState.FAIL, None
        else:
            state, value = TrialState.RUNNING, None
        study.add_trial(
            create_trial(
                params=params,
                distributions=distributions,
                value=value,
                state=state,
                intermediate_values={0: trial.value}
                if state is TrialState.PRUNED and trial.value is not None
                else None,
            )
        )
    asked = study.ask(distributions)
    return {p.name: _plain(asked.params[p.name], p) for p in spec.space}


def _plain(value: Any, param: Param) -> Any:
    if param.kind == "int":
        return int(value)
    if param.kind in ("uniform", "loguniform"):
        return float(value)
    return value


def _distributions(spec: Spec) -> dict[str, Any]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    found: dict[str, Any] = {}
    for param in spec.space:
        if param.kind == "choice":
            found[param.name] = CategoricalDistribution(list(param.choices))
        elif param.kind == "int":
            found[param.name] = IntDistribution(int(param.low), int(param.high))
        else:
            found[param.name] = FloatDistribution(
                param.low, param.high, log=param.kind == "loguniform"
            )
    return found


# ASHA ----------------------------------------------------------------------------------


def rung_steps(spec: Spec) -> list[int]:
    """The steps ASHA's rungs are at: min_steps * eta^k below max_steps, then max_steps."""
    found, step = [], spec.min_steps
    while step < spec.max_steps:
        found.append(step)
        step *= spec.eta
    return [*found, spec.max_steps]


def promotion(
    spec: Spec, at_rungs: list[dict[Any, float]], promoted: set[tuple[Any, int]]
) -> tuple[Any, int] | None:
    """ASHA's next job (Li et al., "A System for Massively Parallel Hyperparameter
    Tuning", Algorithm 2): from the highest rung down, a configuration in the top
    1/eta of those that reached the rung and not promoted from it yet, with the rung
    it goes on from; None: start a new configuration at the bottom rung.
    `at_rungs[k]`: each configuration's value at rung k."""
    for rung in range(len(at_rungs) - 1, -1, -1):
        if rung >= len(rung_steps(spec)) - 1:
            continue  # the top rung: training is over there
        values = at_rungs[rung]
        count = len(values) // spec.eta
        ranked = sorted(values, key=lambda c: values[c], reverse=spec.maximize)
        for config in ranked[:count]:
            if (config, rung) not in promoted:
                return config, rung
    return None


# PBT -----------------------------------------------------------------------------------


def bottom_and_top(spec: Spec, values: dict[int, float]) -> tuple[set[int], list[int]]:
    """Of the population's members (member -> its last value), those in the bottom
    quantile and those in the top one (best first); at least one each."""
    ranked = sorted(values, key=lambda m: values[m], reverse=spec.maximize)
    count = max(1, int(len(ranked) * spec.quantile))
    if len(ranked) < 2:
        return set(), ranked
    return set(ranked[-count:]), ranked[:count]


def explore(spec: Spec, params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """PBT's explore: each number multiplied by one of the perturbation factors (kept in
    its range), each choice drawn again with probability `resample`."""
    found = {}
    for param in spec.space:
        value = params[param.name]
        if param.kind == "choice":
            found[param.name] = rng.choice(param.choices) if rng.random() < spec.resample else value
        else:
            factor = rng.choice(spec.perturb)
            changed = param.clip(float(value) * factor)
            if param.kind == "int" and changed == value:
                # A small integer times 1.2 rounds back to itself, and one at its bound
                # stays there: a step of one, the factor's way, else the other.
                way = 1 if factor > 1 else -1
                changed = param.clip(value + way)
                if changed == value:
                    changed = param.clip(value - way)
            found[param.name] = changed
    return found
