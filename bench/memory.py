"""The whole embedded stack's memory: `podium up --demo` started in a fresh instance, its
proportional set size (PSS, shared pages divided among their users) summed over every
process it started, once it answers and has settled, and again after a burst of work
(sessions run, files submitted and graded, pages read). Goal: at most 500 MiB at rest.

    .venv/bin/python bench/memory.py [--settle 20] [--sessions 5] [--submissions 20]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from portal.ports import free_port  # noqa: E402

PODIUM = str(Path(sys.executable).with_name("podium"))


def pss_mib(root: psutil.Process) -> dict[str, float]:
    """PSS per process name (MiB), the supervisor and everything under it."""
    parts: dict[str, float] = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            pss = process.memory_full_info().pss
            name = " ".join(process.cmdline()[1:4])[:60] or process.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        parts[f"{process.pid} {name}"] = round(pss / 2**20, 1)
    return parts


def podium(home: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PODIUM, *args],
        env=dict(os.environ, PODIUM_HOME=str(home)),
        input=input,
        capture_output=True,
        text=True,
        timeout=300,
    )


def work(url: str, home: Path, folder: Path, sessions: int, submissions: int) -> None:
    login = podium(home, "login", "--url", url, "-u", "demo", "--password-stdin", input="demo")
    assert login.returncode == 0, login.stderr
    script = folder / "main.py"
    script.write_text("import time\nfor i in range(20):\n    print(i, flush=True)\n")
    for _ in range(sessions):
        ran = podium(home, "run", str(script))
        assert ran.returncode == 0, ran.stderr
    data = podium(home, "competition", "data", "digits", "-o", str(folder / "test.csv"))
    assert data.returncode == 0, data.stderr
    ids = [line.split(",")[0] for line in (folder / "test.csv").read_text().split()[1:]]
    predictions = folder / "predictions.csv"
    predictions.write_text(
        "id,prediction\n" + "".join(f"{i},{n % 10}\n" for n, i in enumerate(ids))
    )
    for _ in range(submissions):
        sent = podium(home, "submit", "--file", str(predictions), "-C", "digits")
        if sent.returncode != 0:  # the daily quota: the rest of the burst reads pages
            break
    for path in ("/competitions/digits/rounds/1/leaderboard", "/api/v1/competitions", "/"):
        for _ in range(50):
            requests.get(url + path, timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after start-up")
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--submissions", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        folder.chmod(0o711)  # a root agent's session users pass through to their folders
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
        log = (folder / "stack.log").open("w")
        stack = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "portal.stack",
                "--demo",
                "--port",
                str(port),
                "--instance",
                str(folder / "instance"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 120
            while "Podium is up" not in (folder / "stack.log").read_text():
                if stack.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit((folder / "stack.log").read_text())
                time.sleep(0.2)
            time.sleep(args.settle)
            root = psutil.Process(stack.pid)
            at_rest = pss_mib(root)
            work(
                f"http://127.0.0.1:{port}", folder / "home", folder, args.sessions, args.submissions
            )
            time.sleep(args.settle)
            after = pss_mib(root)
        finally:
            stack.terminate()
            stack.wait(timeout=60)
    print(
        json.dumps(
            {
                "pss_at_rest_mib": round(sum(at_rest.values()), 1),
                "pss_after_work_mib": round(sum(after.values()), 1),
                "goal_at_rest_mib": 500,
                "processes_at_rest": at_rest,
                "processes_after_work": after,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
