"""Environments under the Docker runtime, measured on one stack (as `podium up --demo
--runtime docker` runs it), side by side:

- the first build of the PyTorch environment (examples/mnist_cnn/requirements.txt) on a
  node that does not hold it;
- `podium run` -> the script's first line, with that environment already built, beside
  the same probe in the plain base image (no environment), alternating;
- training examples/mnist_cnn on the demo competition's data, and its accuracy;
- grading throughput: `--submissions` checkpoint submissions of it at once, graded in
  containers (no network, read-only root, the round's limits), per minute.

    .venv/bin/python bench/environments.py [--runs 10] [--submissions 6] [--keep-image]

Needs a Docker engine and `podium/base:latest` (`make images`). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

import docker

from bench.startup import one_run
from nodes.environment import Environment
from tests.integration.stack import Stack, User

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_cnn"
PROBE = "import time; print(repr(time.time()), flush=True)\n"


def first_line(user: User, entry: Path) -> float:
    """Seconds from `podium run` to the script's first line."""
    return one_run(user, entry)["first_line"]


def wait_scored(user: User, ids: set[int], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = [s for s in user.json("competition", "submissions", "digits") if s["id"] in ids]
        if all(s["status"] not in ("grading", "scoring") for s in rows):
            return rows
        if time.monotonic() > deadline:
            raise RuntimeError(f"submissions still grading after {timeout} s: {rows}")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--submissions", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument(
        "--keep-image", action="store_true", help="measure with the environment already built"
    )
    args = parser.parse_args()
    requirements = (EXAMPLE / "requirements.txt").read_text()
    tag = Environment(requirements=requirements).tag
    client = docker.from_env()
    if not args.keep_image:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag, force=True)
    result: dict = {"benchmark": "environments under the Docker runtime", "environment": tag}
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as folder:
        root = Path(folder)
        stack = Stack(root / "stack", PODIUM_NODE_RUNTIME="docker")
        try:
            user = User(stack, root / "home", cwd=root)
            user.login("demo", "demo")

            # 1. Train the example; its first run builds the environment.
            started = time.monotonic()
            trained = user(
                "run",
                str(EXAMPLE / "train.py"),
                "-d",
                "digits-train",
                "-a",
                f"--epochs {args.epochs}",
                timeout=1800,
            )
            total = time.monotonic() - started
            if trained.returncode != 0:
                raise RuntimeError(trained.stdout + trained.stderr)
            out = trained.stdout
            ident = out.splitlines()[0]
            built = re.search(r"environment \S+ built in ([\d.]+) s", out)
            training = re.search(r"done in ([\d.]+) s", out)
            accuracy = re.findall(r"valid/acc=([\d.]+)", out)
            result["first_build_s"] = float(built.group(1)) if built else None
            result["first_run_total_s"] = round(total, 1)
            result["training"] = {
                "epochs": args.epochs,
                "seconds": float(training.group(1)) if training else None,
                "valid_accuracy": float(accuracy[-1]) if accuracy else None,
            }
            result["image_size_mb"] = round(client.images.get(tag).attrs["Size"] / 2**20)

            # 2. Run -> first line, environment built, beside the plain base image.
            with_env = root / "with-env"
            plain = root / "plain"
            for path in (with_env, plain):
                path.mkdir()
                (path / "probe.py").write_text(PROBE)
            shutil.copy(EXAMPLE / "requirements.txt", with_env / "requirements.txt")
            first_line(user, with_env / "probe.py")  # warm-up: uploads
            first_line(user, plain / "probe.py")
            env_times, plain_times = [], []
            for _ in range(args.runs):
                env_times.append(first_line(user, with_env / "probe.py"))
                plain_times.append(first_line(user, plain / "probe.py"))
            result["first_line"] = {
                "runs": args.runs,
                "goal_s": 0.5,
                "median_with_environment_s": round(statistics.median(env_times), 3),
                "median_plain_base_s": round(statistics.median(plain_times), 3),
                "max_with_environment_s": round(max(env_times), 3),
            }

            # 3. Grading throughput: N submissions of the trained checkpoint at once.
            started = time.monotonic()
            ids = set()
            for _ in range(args.submissions):
                body = user.json("submit", f"{ident}:{args.epochs}", "-C", "digits")
                ids.add(body["id"])
            rows = wait_scored(user, ids, timeout=1800)
            elapsed = time.monotonic() - started
            scores = [r["public_score"] for r in rows if r["status"] == "scored"]
            result["grading"] = {
                "submissions": args.submissions,
                "scored": len(scores),
                "seconds": round(elapsed, 1),
                "per_minute_per_node": round(len(scores) / elapsed * 60, 2),
                "public_score": scores[0] if scores else None,
                "node_cpus": os.cpu_count(),
            }
        finally:
            stack.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
