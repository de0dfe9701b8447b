"""Hyperparameter searches on the digits example: random, TPE, ASHA and PBT at equal
budgets, through the real `podium automl` against a Podium stack on loopback (as
`podium up --demo` runs it).

Each search has a budget of 16 sessions, 2 at a time, and searches the learning rate
(log-uniform, 0.001-0.5) and the momentum (0.5-0.99) of the example's network (64
hidden units). Random and TPE train each session 9 epochs; PBT trains 2 members 72
epochs in segments of 9 (16 sessions, the same 144 epochs); ASHA's rungs are at 1, 3
and 9 epochs (eta 3), so it trains fewer epochs in all: the table says how many. Each
algorithm runs with 3 seeds; the figures are the best validation accuracy each search
reached (the metric of its best session, at the step it ended), their mean, and how
long the searches took.

    .venv/bin/python bench/automl.py [--seeds 3] [--sessions 16]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.stack import Stack, User

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits" / "train.py"
ALGORITHMS = ("random", "tpe", "asha", "pbt")
EPOCHS = 9


def spec(algorithm: str, seed: int, sessions: int) -> str:
    common = f"""
        script: train.py
        metric: valid/acc
        algorithm: {algorithm}
        search:
          lr: {{loguniform: [0.001, 0.5]}}
          momentum: {{uniform: [0.5, 0.99]}}
        budget: {{sessions: {sessions}}}
        parallel: 2
        seed: {seed}
    """
    extra = {
        "random": f"args: --hidden 64 --epochs {EPOCHS}",
        "tpe": f"args: --hidden 64 --epochs {EPOCHS}",
        "asha": f"args: --hidden 64\nasha: {{min_steps: 1, eta: 3, max_steps: {EPOCHS}}}",
        # The same epochs as random's: sessions x 9, over 2 members.
        "pbt": "args: --hidden 64\n"
        f"pbt: {{interval: {EPOCHS}, steps: {EPOCHS * sessions // 2}, quantile: 0.5}}",
    }[algorithm]
    return textwrap.dedent(common) + extra + "\n"


def run_search(user: User, folder: Path, algorithm: str, seed: int, sessions: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DIGITS, folder / "train.py")
    (folder / "search.yaml").write_text(spec(algorithm, seed, sessions))
    started = time.monotonic()
    result = user("automl", str(folder / "search.yaml"), "--detach")
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    ident = result.stdout.strip()
    while (found := user.json("automl", "show", ident))["status"] == "running":
        if time.monotonic() - started > 1800:
            raise RuntimeError(f"{ident} did not finish in 30 minutes")
        time.sleep(1)
    seconds = time.monotonic() - started
    trials = found["trials"]
    epochs = 0
    for trial in trials:
        start = int(trial["checkpoint"]) if trial["checkpoint"] else 0
        epochs += max(0, (trial["step"] or start) - start)
    return {
        "search": ident,
        "status": found["status"],
        "best": found["best"]["value"] if found["best"] else None,
        "sessions": len(trials),
        "epochs_trained": epochs,
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=16)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="podium-bench-automl-") as folder:
        root = Path(folder)
        stack = Stack(root / "stack")
        try:
            user = User(stack, root / "home", cwd=root)
            user.login("demo", "demo")
            runs: dict[str, list[dict]] = {a: [] for a in ALGORITHMS}
            for seed in range(args.seeds):
                for algorithm in ALGORITHMS:
                    runs[algorithm].append(
                        run_search(
                            user, root / f"{algorithm}-{seed}", algorithm, seed, args.sessions
                        )
                    )
        finally:
            stack.stop()
    summary = {
        algorithm: {
            "best_valid_acc_mean": round(statistics.mean(r["best"] for r in found), 4),
            "best_valid_acc_by_seed": [r["best"] for r in found],
            "sessions_mean": statistics.mean(r["sessions"] for r in found),
            "epochs_trained_mean": statistics.mean(r["epochs_trained"] for r in found),
            "seconds_mean": round(statistics.mean(r["seconds"] for r in found), 1),
        }
        for algorithm, found in runs.items()
    }
    print(
        json.dumps(
            {
                "workload": f"examples/digits, lr and momentum, {args.sessions} sessions, "
                "2 in parallel",
                "seeds": args.seeds,
                "summary": summary,
                "runs": runs,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
