"""The metrics path, Podium beside an MLflow tracking server, in one run.

Starts a Podium stack on loopback (as `podium up --demo` does) and an MLflow tracking
server (SQLite backend, 2 workers) from a virtual environment of its own
(`.bench/mlflow`, made with `pip install mlflow` on the first run), and measures:

- ingestion through each one's HTTP API, one client, 10 tags x 20,000 steps in
  requests of 1,000 points, three rounds of each, alternating: the median points per
  second of each, and their ratio;
- the same end to end through each one's own client: Podium's `sdk.report` in a running
  session until the last point reads back, MLflow's `log_batch` until
  `get_metric_history` returns it;
- the cost of one `sdk.report` call with 10 tags inside a running session (median, p99)
  and how long after the loop every point is readable;
- the comparison view's data: N sessions (runs) x 1 tag x 100,000 points, downsampled
  for a 1,000-pixel plot (Podium: `GET /api/v1/compare`; MLflow: its
  `get-history-bulk-interval` with 2,500 points per run);
- bytes stored per point in each one's database.

    .venv/bin/python bench/metrics.py [--sessions 100] [--skip-mlflow-compare]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from portal.ports import free_port
from tests.integration.stack import PODIUM, Stack, User

ROOT = Path(__file__).resolve().parents[1]

MLFLOW_VENV = ROOT / ".bench" / "mlflow"
TAGS, STEPS, BATCH = 10, 20_000, 1_000
ROUNDS = 3  # ingestion rounds, Podium and MLflow alternating; the medians are compared
COMPARE_POINTS = 100_000


def mlflow_python() -> Path:
    python = MLFLOW_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlflow"], check=True)
    return python


class MlflowServer:
    def __init__(self, root: Path):
        self.root = root
        self.db = root / "mlflow.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (root / "mlflow.log").open("w")
        self.process = subprocess.Popen(
            [
                str(MLFLOW_VENV / "bin" / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.db}",
                "--default-artifact-root",
                str(root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "2",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(
                    "the MLflow server did not start: " + (root / "mlflow.log").read_text()[-2000:]
                )
            time.sleep(0.5)
        self.http = requests.Session()
        experiment = self.http.post(
            self.url + "/api/2.0/mlflow/experiments/create", json={"name": "bench"}, timeout=30
        ).json()
        self.experiment = experiment["experiment_id"]

    def new_run(self) -> str:
        body = self.http.post(
            self.url + "/api/2.0/mlflow/runs/create",
            json={"experiment_id": self.experiment, "start_time": int(time.time() * 1000)},
            timeout=30,
        ).json()
        return body["run"]["info"]["run_id"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def detach(user: User, entry: Path, *options: str) -> str:
    """`podium run ENTRY --detach`: the new session's id."""
    return subprocess.run(
        [PODIUM, "run", str(entry), "--detach", *options],
        env=dict(os.environ, PODIUM_HOME=str(user.home)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def batches(prefix: str = "tag"):
    """10 tags x 20,000 steps as requests of 1,000 points (100 steps x 10 tags)."""
    per = BATCH // TAGS
    for first in range(0, STEPS, per):
        yield [
            (f"{prefix}{t}", step, step * 0.001 + t)
            for step in range(first, first + per)
            for t in range(TAGS)
        ]


def podium_api_ingest(user: User, ident: str, prefix: str = "tag") -> float:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {user.token()}"
    url = f"{user.stack.url}/api/v1/sessions/{ident}/events"
    started = time.perf_counter()
    for seq, batch in enumerate(batches(prefix)):
        columns: dict[str, dict[str, list]] = {}
        now = time.time()
        for tag, step, value in batch:
            column = columns.setdefault(tag, {"step": [], "value": [], "wall_time": []})
            column["step"].append(step)
            column["value"].append(value)
            column["wall_time"].append(now)
        response = http.post(
            url, json={"stream": prefix, "seq": seq, "scalars": columns}, timeout=60
        )
        response.raise_for_status()
    return TAGS * STEPS / (time.perf_counter() - started)


def mlflow_api_ingest(server: MlflowServer, run_id: str) -> float:
    started = time.perf_counter()
    for batch in batches():
        now = int(time.time() * 1000)
        response = server.http.post(
            server.url + "/api/2.0/mlflow/runs/log-batch",
            json={
                "run_id": run_id,
                "metrics": [
                    {"key": tag, "value": value, "timestamp": now, "step": step}
                    for tag, step, value in batch
                ],
            },
            timeout=60,
        )
        response.raise_for_status()
    return TAGS * STEPS / (time.perf_counter() - started)


REPORTER = textwrap.dedent(
    f"""
    import json, time
    from cli import sdk
    tags = [f"tag{{i}}" for i in range({TAGS})]
    costs = []
    start = time.time()
    for step in range({STEPS}):
        values = {{tag: step * 0.001 + i for i, tag in enumerate(tags)}}
        before = time.perf_counter_ns()
        sdk.report(step, **values)
        costs.append(time.perf_counter_ns() - before)
    end = time.time()
    costs.sort()
    print(json.dumps({{"start": start, "end": end, "median_ns": costs[len(costs) // 2],
                      "p99_ns": costs[int(len(costs) * 0.99)]}}), flush=True)
    time.sleep(30)  # the session stays up while the benchmark reads the points back
    """
)


def podium_end_to_end(user: User, root: Path) -> dict:
    code = root / "reporter"
    code.mkdir()
    (code / "report.py").write_text(REPORTER)
    ident = detach(user, code / "report.py")
    summary = None
    deadline = time.monotonic() + 300
    while summary is None:
        lines = user.api("GET", f"/sessions/{ident}/logs", params={"after": -1}).json()["lines"]
        for line in lines:
            if line["text"].startswith("{"):
                summary = json.loads(line["text"])
        if time.monotonic() > deadline:
            raise RuntimeError("the reporting session printed nothing")
        time.sleep(0.05)
    while True:
        series = user.api("GET", f"/sessions/{ident}/series").json()
        if len(series) == TAGS and all(s["count"] == STEPS for s in series):
            readable = time.time()
            break
        time.sleep(0.02)
    user("stop", ident)
    return {
        "points_per_s": round(TAGS * STEPS / (readable - summary["start"])),
        "report_call_median_us": round(summary["median_ns"] / 1000, 2),
        "report_call_p99_us": round(summary["p99_ns"] / 1000, 2),
        "readable_after_loop_s": round(readable - summary["end"], 3),
    }


MLFLOW_CLIENT = textwrap.dedent(
    f"""
    import sys, time
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    client = MlflowClient(tracking_uri=sys.argv[1])
    run_id = sys.argv[2]
    started = time.time()
    per = {BATCH} // {TAGS}
    for first in range(0, {STEPS}, per):
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[
            Metric(f"tag{{t}}", step * 0.001 + t, now, step)
            for step in range(first, first + per) for t in range({TAGS})])
    while len(client.get_metric_history(run_id, "tag{TAGS - 1}")) < {STEPS}:
        time.sleep(0.02)
    print({TAGS * STEPS} / (time.time() - started))
    """
)


def mlflow_end_to_end(server: MlflowServer, root: Path) -> float:
    script = root / "mlflow_client.py"
    script.write_text(MLFLOW_CLIENT)
    done = subprocess.run(
        [str(MLFLOW_VENV / "bin" / "python"), str(script), server.url, server.new_run()],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def table_bytes(db: Path, tables: tuple[str, ...]) -> int:
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # count what is in the WAL too
        names = [
            row[0]
            for row in connection.execute(
                f"SELECT name FROM sqlite_master WHERE tbl_name IN ({','.join('?' * len(tables))})",
                tables,
            )
        ]
        return sum(
            connection.execute(
                "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = ?", (name,)
            ).fetchone()[0]
            for name in names
        )


def podium_compare(user: User, sessions: int) -> dict:
    """N pending sessions (a sleeper that never gets placed for want of room), each given
    100,000 points of one tag through the API, then the comparison's data, 5 times."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {user.token()}"
    code = user.stack.root / "compare-code"
    code.mkdir(exist_ok=True)
    (code / "idle.py").write_text("import time\ntime.sleep(3600)\n")
    idents = []
    for _ in range(sessions):
        idents.append(detach(user, code / "idle.py", "-m", "64M", "-c", "0.1"))
    steps = list(range(COMPARE_POINTS))
    for index, ident in enumerate(idents):
        values = [((step * 7919 + index) % 1000) / 1000 for step in steps]
        for first in range(0, COMPARE_POINTS, 50_000):
            http.post(
                f"{user.stack.url}/api/v1/sessions/{ident}/events",
                json={
                    "scalars": {
                        "loss": {
                            "step": steps[first : first + 50_000],
                            "value": values[first : first + 50_000],
                            "wall_time": [1.0 + s for s in steps[first : first + 50_000]],
                        }
                    }
                },
                timeout=120,
            ).raise_for_status()
    times, size, points = [], 0, 0
    for _ in range(5):
        started = time.perf_counter()
        response = http.get(
            f"{user.stack.url}/api/v1/compare",
            params={"s": ",".join(idents), "tag": "loss", "points": 1000},
            timeout=120,
        )
        body = response.content
        times.append(time.perf_counter() - started)
        size = len(body)
        points = sum(len(line["step"]) for line in json.loads(body)["lines"])
    for ident in idents:
        user("stop", ident)
    return {
        "sessions": sessions,
        "points_per_session": COMPARE_POINTS,
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "bytes": size,
        "points_shipped": points,
    }


def mlflow_compare(server: MlflowServer, runs: int) -> dict:
    """The same points written straight into MLflow's database (its API would take
    hours), then its bulk interval read, as its comparison view does."""
    run_ids = [server.new_run() for _ in range(runs)]
    with sqlite3.connect(server.db) as connection:
        for index, run_id in enumerate(run_ids):
            connection.executemany(
                "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                "VALUES ('loss', ?, ?, ?, ?, 0)",
                (
                    (((step * 7919 + index) % 1000) / 1000, 1000 + step, run_id, step)
                    for step in range(COMPARE_POINTS)
                ),
            )
            connection.execute(
                "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                "VALUES ('loss', 0.5, ?, ?, 0, ?)",
                (1000 + COMPARE_POINTS - 1, COMPARE_POINTS - 1, run_id),
            )
    started = time.perf_counter()
    response = server.http.get(
        server.url + "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
        params={"run_ids": run_ids, "metric_key": "loss", "max_results": 2500},
        timeout=3600,
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return {"runs": runs, "seconds": round(elapsed, 3), "bytes": len(response.content)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--skip-mlflow-compare", action="store_true")
    args = parser.parse_args()
    mlflow_python()
    result: dict = {"benchmark": "metrics path, Podium beside MLflow"}
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as folder:
        root = Path(folder)
        stack = Stack(root / "stack")
        server = MlflowServer(root)
        try:
            user = User(stack, root / "home", cwd=root)
            user.login("demo", "demo")
            idle = root / "idle"
            idle.mkdir()
            (idle / "idle.py").write_text("import time\ntime.sleep(600)\n")
            ident = detach(user, idle / "idle.py")
            # Both servers and the session have started (MLflow's workers and job
            # consumer take seconds of CPU after its first answer): let the machine settle,
            # then alternate, so that noise falls on both alike.
            time.sleep(10)
            podium_rates, mlflow_rates = [], []
            for round_ in range(ROUNDS):
                podium_rates.append(podium_api_ingest(user, ident, f"r{round_}tag"))
                mlflow_rates.append(mlflow_api_ingest(server, server.new_run()))
            podium_rate = statistics.median(podium_rates)
            mlflow_rate = statistics.median(mlflow_rates)
            result["api_ingestion"] = {
                "points": TAGS * STEPS,
                "rounds": ROUNDS,
                "podium_points_per_s": round(podium_rate),
                "mlflow_points_per_s": round(mlflow_rate),
                "podium_rounds": [round(r) for r in podium_rates],
                "mlflow_rounds": [round(r) for r in mlflow_rates],
                "ratio": round(podium_rate / mlflow_rate, 1),
                "goal_ratio": 10,
            }
            podium_db = stack.instance / "podium.db"
            podium_bytes = table_bytes(
                podium_db, ("scalar_chunks", "scalar_series", "scalar_summary_blocks")
            )
            mlflow_bytes = table_bytes(server.db, ("metrics", "latest_metrics"))
            result["bytes_per_point"] = {
                "podium": round(podium_bytes / (ROUNDS * TAGS * STEPS), 2),
                "mlflow": round(mlflow_bytes / (ROUNDS * TAGS * STEPS), 2),
            }
            user("stop", ident)
            podium_e2e = podium_end_to_end(user, root)
            mlflow_e2e = mlflow_end_to_end(server, root)
            result["end_to_end"] = {
                "podium_points_per_s": podium_e2e["points_per_s"],
                "mlflow_points_per_s": round(mlflow_e2e),
                "ratio": round(podium_e2e["points_per_s"] / mlflow_e2e, 1),
                "goal_ratio": 10,
            }
            result["sdk_report"] = {
                "tags": TAGS,
                "median_us": podium_e2e["report_call_median_us"],
                "p99_us": podium_e2e["report_call_p99_us"],
                "goal_median_us": 20,
                "readable_after_loop_s": podium_e2e["readable_after_loop_s"],
                "goal_readable_s": 1.0,
            }
            result["compare"] = {
                "podium": podium_compare(user, args.sessions),
                "goal_s": 0.5,
            }
            if not args.skip_mlflow_compare:
                result["compare"]["mlflow"] = mlflow_compare(server, args.sessions)
        finally:
            server.stop()
            stack.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
