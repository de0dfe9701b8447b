"""Time from `podium run` to the first line of the user's script, per runtime.

Starts a whole stack on loopback (as `podium up --demo` does), then runs a script whose
first statement prints the time, `--runs` times, with the real `podium` command. Prints
JSON: for each run the seconds until the script's first line ran ("first_line") and
until `podium run` printed that line back ("echoed"), with their medians.

    .venv/bin/python bench/startup.py [--runs 10] [--runtimes local,docker]

The Docker runtime needs an engine and `podium/base:latest` (`make images`); both
runtimes are measured in the same run, one stack after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.stack import PODIUM, Stack, User

PROBE = "import time; print(repr(time.time()), flush=True)\n"


def one_run(user: User, entry: Path) -> dict[str, float]:
    env = dict(os.environ, PODIUM_HOME=str(user.home))
    started = time.time()
    process = subprocess.Popen(
        [PODIUM, "run", str(entry)],
        stdout=subprocess.PIPE,
        text=True,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=user.cwd,
    )
    assert process.stdout is not None
    ident = process.stdout.readline().strip()
    line = process.stdout.readline()
    while line.startswith("podium: "):  # Podium's own lines (an environment) come first
        line = process.stdout.readline()
    first_line = float(line)
    echoed = time.time()
    process.wait(timeout=60)
    assert process.returncode == 0, ident
    return {"session": ident, "first_line": first_line - started, "echoed": echoed - started}


def measure(runtime: str, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as folder:
        root = Path(folder)
        stack = Stack(root / "stack", PODIUM_NODE_RUNTIME=runtime)
        try:
            user = User(stack, root / "home", cwd=root)
            user.login("demo", "demo")
            entry = root / "code" / "probe.py"
            entry.parent.mkdir()
            entry.write_text(PROBE)
            one_run(user, entry)  # warm-up: the code archive is uploaded once
            results = [one_run(user, entry) for _ in range(runs)]
        finally:
            stack.stop()
    return {
        "runtime": runtime,
        "runs": len(results),
        "median_first_line_s": round(statistics.median(r["first_line"] for r in results), 3),
        "median_echoed_s": round(statistics.median(r["echoed"] for r in results), 3),
        "max_first_line_s": round(max(r["first_line"] for r in results), 3),
        "each": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in results
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--runtimes", default="local")
    args = parser.parse_args()
    result = {
        "benchmark": "podium run -> first line of the user's script",
        "goal_s": 1.0,
        "runtimes": [measure(runtime, args.runs) for runtime in args.runtimes.split(",")],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
