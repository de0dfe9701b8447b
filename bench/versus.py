"""A benchmark of this checkout against an earlier revision, side by side in one run.

    .venv/bin/python bench/versus.py REV [--rounds 2] [--bench scheduler.py --only policy]

Checks REV out beside this checkout (a git worktree, so that the traces in ../shared
are found from both), then runs the benchmark script on REV and on this checkout in
turn, `--rounds` times each, with this checkout's virtual environment. Machines are
shared and noisy: alternating the two in one run is what makes their ratio mean
something. Prints one JSON object: each round's output, by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(checkout: Path, bench: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, str(checkout / "bench" / bench[0]), *bench[1:]],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
    )
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"versus: bench/{bench[0]} failed in {checkout}: {last}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--bench", nargs=argparse.REMAINDER, default=["scheduler.py", "--only", "policy"]
    )
    args = parser.parse_args()
    result: dict = {"revision": args.revision, "bench": args.bench, "before": [], "now": []}
    # Beside this checkout, as the benchmarks look for ../shared from their own.
    before = ROOT.parent / f".versus-{os.getpid()}"
    git = ["git", "-C", str(ROOT), "worktree"]
    added = subprocess.run(
        [*git, "add", "--detach", "-q", str(before), args.revision], capture_output=True, text=True
    )
    if added.returncode:
        sys.exit(f"versus: cannot check out {args.revision}: {added.stderr.strip()}")
    try:
        for _ in range(args.rounds):
            result["before"].append(run(before, args.bench))
            result["now"].append(run(ROOT, args.bench))
    finally:
        subprocess.run([*git, "remove", "--force", str(before)], check=True)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
