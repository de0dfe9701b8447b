"""Podium under load: the embedded stack (`podium up --demo`: gunicorn with 2 gevent
workers, the scheduler, the grader, a node) driven by locust with
- browsers reading leaderboards (API and page), sessions, their scalars and datasets;
- teams submitting predictions, one file a second each (20 a second by default);
- running sessions reporting ten scalars a second each, with their own session tokens
  (50 by default). They run on a node that this script plays over the node API (its
  registration, the session specs, the running reports, heartbeats): a 2-core machine
  cannot hold 50 training processes beside the rest;
then waits until every accepted submission is graded, and checks that each was graded
exactly once (the grader's log). Memory at rest (PSS summed over every process of the
stack) is read after start-up and again after the load.

    .venv/bin/python bench/load.py [--duration 300] [--browsers 200] [--submitters 20]
                                   [--reporters 50]

Prints JSON: errors, p50/p99 per route, submissions accepted and graded, memory.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.memory import pss_mib  # noqa: E402
from tests import factories  # noqa: E402
from tests.api.test_api import code_archive  # noqa: E402
from tests.integration.stack import Stack  # noqa: E402

LOCUST = str(Path(sys.executable).with_name("locust"))
SESSION_MEMORY_MB = 512 * 1024  # more than the real node has: only the played node fits


class Api:
    def __init__(self, url: str, token: str | None = None):
        self.url, self.session = url + "/api/v1", requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def __call__(self, method: str, path: str, **kwargs) -> Any:
        response = self.session.request(method, self.url + path, timeout=60, **kwargs)
        assert response.ok, (method, path, response.status_code, response.text[:300])
        return response.json() if response.content else {}


def log_in(url: str, username: str, password: str) -> str:
    body = Api(url)("POST", "/auth/tokens", json={"username": username, "password": password})
    assert isinstance(body, dict)
    return body["token"]


def account(url: str, username: str) -> str:
    Api(url)("POST", "/auth/users", json={"username": username, "password": "load-password"})
    return log_in(url, username, "load-password")


class PlayedNode:
    """A node with room for every reporting session, played over the node API: it takes
    its sessions' specs (and so their tokens), says they run, and beats."""

    def __init__(self, url: str, join_token: str):
        body = Api(url)(
            "POST",
            "/internal/nodes/register",
            json={
                "name": "load-node",
                "cpu_count": 512,
                "memory_mb": 64 * 2**20,
                "runtime": "docker",
                "join_token": join_token,
            },
        )
        assert isinstance(body, dict)
        self.api = Api(url, body["node_token"])
        self.running: list[int] = []
        self.idents: dict[int, str] = {}
        self.stopping = threading.Event()

    def started(self, count: int, timeout: float = 120) -> list[int]:
        """The ids of the first `count` sessions the scheduler starts here."""
        ids: list[int] = []
        deadline = time.monotonic() + timeout
        while len(ids) < count:
            assert time.monotonic() < deadline, f"{len(ids)} of {count} sessions placed"
            work = self.api("POST", "/internal/nodes/work", json={"wait": 1})
            assert isinstance(work, dict)
            ids += [job["session_id"] for job in work["jobs"] if job["kind"] == "start"]
        threading.Thread(target=self._beat, daemon=True).start()
        return ids

    def _beat(self) -> None:
        while not self.stopping.wait(1.0):
            try:
                self.api("POST", "/internal/nodes/heartbeat", json={"running": self.running})
                self.api("POST", "/internal/nodes/work", json={"wait": 0})
            except (AssertionError, requests.RequestException):
                pass  # a slow beat under load; the next one goes

    def start(self, session_id: int) -> str:
        spec = self.api("GET", f"/internal/sessions/{session_id}/spec")
        assert isinstance(spec, dict)
        self.idents[session_id] = spec["ident"]
        self.api("POST", f"/internal/sessions/{session_id}/state", json={"status": "running"})
        self.running.append(session_id)
        return spec["token"]

    def end_all(self) -> None:
        for session_id in self.running:
            self.api(
                "POST",
                f"/internal/sessions/{session_id}/state",
                json={"status": "completed", "exit_code": 0},
            )
        self.running = []
        self.stopping.set()


def setup(stack: Stack, args, folder: Path) -> PlayedNode:
    url = stack.url
    admin = Api(url, log_in(url, "admin", "admin"))
    demo_token = log_in(url, "demo", "demo")
    demo = Api(url, demo_token)
    # Browsers: demo's teammates, who see its sessions; submitters: a team each.
    browsers = [account(url, f"browser{n}") for n in range(10)]
    demo("POST", "/teams", json={"name": "lab"})
    for n, token in enumerate(browsers):
        demo("POST", "/teams/lab/members", json={"username": f"browser{n}"})
        Api(url, token)("POST", "/teams/lab/accept")
    submitters = [account(url, f"team{n}") for n in range(args.submitters)]
    files = factories.competition_files(rows=200)
    spec = factories.competition_spec("load", daily_quota=10**9, total_quota=10**9)
    form = {"spec": (None, json.dumps(spec))}
    form.update({name: (name, body) for name, body in files.items()})
    admin("POST", "/competitions", files=form)
    predictions = [factories.predictions(files, k).decode() for k in (50, 100, 150, 200)]
    node = PlayedNode(url, stack.join_token())
    digest = demo("PUT", "/code", data=code_archive({"train.py": "print(1)\n"}))["digest"]
    for _ in range(args.reporters):
        demo(
            "POST",
            "/sessions",
            json={"entry": "train.py", "code_digest": digest, "memory_mb": SESSION_MEMORY_MB},
        )
    sessions = []
    for session_id in node.started(args.reporters):
        token = node.start(session_id)
        spec_ident = node.idents[session_id]
        sessions.append({"ident": spec_ident, "token": token})
        # Its first report, before anyone reads its scalars.
        first = {"loss": {"step": [0], "value": [1.0], "wall_time": [0.0]}}
        Api(url, token)("POST", f"/sessions/{spec_ident}/events", json={"scalars": first})
    config = {
        "slug": "load",
        "browser_tokens": [demo_token, *browsers],
        "submitter_tokens": submitters,
        "sessions": sessions,
        "predictions": predictions,
    }
    (folder / "setup.json").write_text(json.dumps(config))
    return node


def stack_pss(stack: Stack) -> float:
    return round(sum(pss_mib(psutil.Process(stack.process.pid)).values()), 1)


def routes(prefix: Path) -> tuple[dict, int, int]:
    rows = list(csv.DictReader(io.StringIO(Path(f"{prefix}_stats.csv").read_text())))
    table = {}
    requests_, failures = 0, 0
    for row in rows:
        if row["Name"] == "Aggregated":
            requests_, failures = int(row["Request Count"]), int(row["Failure Count"])
            continue
        table[f"{row['Type']} {row['Name']}"] = {
            "requests": int(row["Request Count"]),
            "failures": int(row["Failure Count"]),
            "p50_ms": float(row["50%"]),
            "p99_ms": float(row["99%"]),
            "per_second": round(float(row["Requests/s"]), 1),
        }
    return table, requests_, failures


def graded(stack: Stack, submitted: list[int], timeout: float) -> dict:
    """Wait until no accepted submission is still being scored; then how each ended and
    how many times the grader scored each."""
    database = stack.instance / "podium.db"
    started = time.monotonic()
    while True:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            statuses = Counter(
                dict(
                    connection.execute(
                        "SELECT status, count(*) FROM submissions s JOIN rounds r "
                        "ON r.id = s.round_id JOIN competitions c ON c.id = r.competition_id "
                        "WHERE c.slug = 'load' GROUP BY status"
                    ).fetchall()
                )
            )
        if not statuses.get("scoring") and not statuses.get("queued"):
            break
        if time.monotonic() - started > timeout:
            break
        time.sleep(1)
    drained = time.monotonic() - started
    log = (stack.instance / "logs" / "grader.log").read_text()
    counts = Counter(int(n) for n in re.findall(r"submission (\d+): scored", log))
    return {
        "statuses": dict(statuses),
        "seconds_to_drain_after_load": round(drained, 1),
        "graded_exactly_once": all(counts[n] == 1 for n in submitted),
        "graded_more_than_once": sorted(n for n in submitted if counts[n] > 1),
        "never_graded": sorted(n for n in submitted if counts[n] == 0),
    }


def kill_workers(stack: Stack, every: float, stop: threading.Event, killed: list[int]) -> None:
    """kill -9 a worker of the users' gunicorn every `every` seconds; gunicorn starts
    another."""
    master = stack.child("-m gunicorn --workers 2")
    while not stop.wait(every):
        workers = master.children()
        if workers:
            victim = random.choice(workers)
            victim.kill()
            killed.append(victim.pid)


def integrity(stack: Stack, submitted: list[int]) -> dict:
    """No half-written rows: every submission of the load round has its predictions in
    the store, and every one a client was told was accepted is there."""
    from portal.services.artifacts import ArtifactStore

    store = ArtifactStore(str(stack.instance / "artifacts"))
    with sqlite3.connect(f"file:{stack.instance / 'podium.db'}?mode=ro", uri=True) as connection:
        rows = connection.execute(
            "SELECT s.id, s.predictions_digest FROM submissions s JOIN rounds r "
            "ON r.id = s.round_id JOIN competitions c ON c.id = r.competition_id "
            "WHERE c.slug = 'load'"
        ).fetchall()
    stored = {n for n, _ in rows}
    return {
        "submission_rows": len(rows),
        "rows_without_their_file": sorted(n for n, d in rows if not store.exists(d)),
        "accepted_but_missing": sorted(set(submitted) - stored),
        # Committed, but the client's connection was cut before it heard so.
        "stored_without_an_answer": len(stored - set(submitted)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=300, help="seconds of load")
    parser.add_argument("--browsers", type=int, default=200)
    parser.add_argument("--submitters", type=int, default=20, help="one file a second each")
    parser.add_argument("--reporters", type=int, default=50, help="sessions reporting")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds before memory")
    parser.add_argument(
        "--kill-worker-every",
        type=float,
        default=0,
        help="kill -9 one of the portal's gunicorn workers this often (seconds) under load",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="podium-load-"))
    stack = Stack(
        folder / "stack",
        # A node beaten by a busy machine must not be declared lost in the middle.
        PODIUM_NODE_HEARTBEAT_SECONDS="2",
        PODIUM_NODE_LOST_AFTER_SECONDS="60",
    )
    result: dict = {"duration_s": args.duration, "users": vars(args)}
    try:
        time.sleep(args.settle)
        result["memory_at_rest_mib"] = stack_pss(stack)
        node = setup(stack, args, folder)
        submitted_file = folder / "submitted.txt"
        submitted_file.touch()
        users = args.browsers + args.submitters + args.reporters
        env = dict(
            os.environ,
            PODIUM_LOAD_SETUP=str(folder / "setup.json"),
            PODIUM_LOAD_SUBMITTED=str(submitted_file),
            PODIUM_LOAD_SUBMITTERS=str(args.submitters),
            PODIUM_LOAD_REPORTERS=str(args.reporters),
        )
        prefix = folder / "locust"
        started = time.monotonic()
        killing = threading.Event()
        killed: list[int] = []
        if args.kill_worker_every:
            threading.Thread(
                target=kill_workers,
                args=(stack, args.kill_worker_every, killing, killed),
                daemon=True,
            ).start()
        run = subprocess.run(
            [
                LOCUST,
                "-f",
                str(ROOT / "bench" / "locustfile.py"),
                "--headless",
                "--host",
                stack.url,
                "--users",
                str(users),
                "--spawn-rate",
                str(max(10, users // 10)),
                "--run-time",
                f"{args.duration}s",
                "--stop-timeout",
                "10",
                "--csv",
                str(prefix),
                "--only-summary",
                "--loglevel",
                "WARNING",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=args.duration + 300,
        )
        killing.set()
        result["load_seconds"] = round(time.monotonic() - started, 1)
        result["portal_workers_killed"] = len(killed)
        table, total, failures = routes(prefix)
        result["requests"] = total
        result["errors"] = failures
        result["routes"] = table
        failures_csv = Path(f"{prefix}_failures.csv")
        result["error_kinds"] = (
            list(csv.DictReader(io.StringIO(failures_csv.read_text())))[:10]
            if failures_csv.exists()
            else []
        )
        submitted = [int(n) for n in submitted_file.read_text().split()]
        result["submissions_accepted"] = len(submitted)
        result["submissions_per_second"] = round(len(submitted) / args.duration, 1)
        result["grading"] = graded(stack, submitted, timeout=max(600, args.duration * 2))
        result["integrity"] = integrity(stack, submitted)
        node.end_all()
        time.sleep(args.settle)
        result["memory_after_load_mib"] = stack_pss(stack)
        if run.returncode not in (0, 1):  # 1: some requests failed (counted above)
            result["locust_stderr"] = run.stderr[-2000:]
    finally:
        stack.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
