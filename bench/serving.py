"""A served digits model under load, beside the same model called in-process.

Starts a Podium stack on loopback (as `podium up --demo` runs it), trains the digits
example (5 epochs), serves its last checkpoint with `podium serve` and, once a replica
is ready, sends prediction requests of one row each from 50 concurrent clients for a
fixed time (`POST /api/v1/serve/NAME/predict` with a user's token, as `curl` would):
requests per second, and p50/p99 latency. Then the same checkpoint, downloaded and
loaded here, predicts the same rows in-process the way a replica does (the row written
as the CSV file the example's `infer` reads): its p50/p99 and calls per second. The
difference is what the platform adds (HTTP, the portal, the Redis queue, the
replica's long poll); one client alone shows it without the queueing of 50.

    .venv/bin/python bench/serving.py [--clients 50] [--seconds 20] [--replicas 1]

Only 127.0.0.1 is called, and the load stops by itself. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.stack import Stack, User

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits" / "train.py"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def summary(latencies_ms: list[float], seconds: float) -> dict:
    return {
        "count": len(latencies_ms),
        "per_second": round(len(latencies_ms) / seconds, 1),
        "p50_ms": round(percentile(latencies_ms, 0.5), 2),
        "p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "mean_ms": round(statistics.mean(latencies_ms), 2),
    }


def rows() -> list[list]:
    from sklearn.datasets import load_digits

    images, _labels = load_digits(return_X_y=True)
    return [[f"r{i}", *images[i].tolist()] for i in range(len(images))]


def load_test(url: str, token: str, data: list[list], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    failures: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {token}"
        count = 0
        while time.monotonic() < deadline:
            row = data[(index * 997 + count) % len(data)]
            count += 1
            started = time.perf_counter()
            answer = http.post(url, json={"rows": [row]}, timeout=60)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if answer.status_code == 200:
                    latencies.append(elapsed)
                else:
                    failures[answer.status_code] = failures.get(answer.status_code, 0) + 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - started
    return {**summary(latencies, took), "failures": failures, "clients": clients}


def in_process(checkpoint: Path, data: list[list], seconds: float) -> dict:
    """The replica's work without the platform: the row as a CSV file, read and
    predicted as the example's infer does."""
    state = pickle.loads((checkpoint / "model.pkl").read_bytes())
    model, scaler = state["model"], state["scaler"]
    latencies = []
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "request.csv"
        count = 0
        while time.monotonic() < deadline:
            row = data[count % len(data)]
            count += 1
            began = time.perf_counter()
            header = "id," + ",".join(f"x{i}" for i in range(1, len(row)))
            path.write_text(header + "\n" + ",".join(map(str, row)) + "\n")
            table = np.atleast_2d(np.genfromtxt(path, delimiter=",", skip_header=1, dtype=str))
            ids, pixels = table[:, 0], table[:, 1:].astype(float)
            dict(zip(ids, model.predict(scaler.transform(pixels)).tolist(), strict=True))
            latencies.append((time.perf_counter() - began) * 1000)
    return summary(latencies, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args(argv)
    data = rows()
    with tempfile.TemporaryDirectory(prefix="podium-bench-serving-") as folder:
        root = Path(folder)
        stack = Stack(root / "stack")
        try:
            user = User(stack, root / "home", cwd=root)
            user.login("demo", "demo")
            trained = user("run", str(DIGITS), "-a", "--epochs 5 --lr 0.1", timeout=300)
            if trained.returncode != 0:
                raise RuntimeError(trained.stderr)
            session = trained.stdout.splitlines()[0]
            started = user("serve", session, "--replicas", str(args.replicas))
            if started.returncode != 0:
                raise RuntimeError(started.stderr)
            name = started.stdout.strip()
            deadline = time.monotonic() + 300
            while user.json("serve", "show", name)["stats"]["ready_replicas"] < args.replicas:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} was not ready in 5 minutes")
                time.sleep(0.5)
            url = f"{stack.url}/api/v1/serve/{name}/predict"
            load_test(url, user.token(), data, 5, 3)  # warm up
            alone = load_test(url, user.token(), data, 1, min(args.seconds, 10.0))
            served = load_test(url, user.token(), data, args.clients, args.seconds)
            shown = user.json("serve", "show", name)["stats"]
            target = root / "checkpoint"
            pulled = user("model", "pull", f"{session}:5", str(target))
            if pulled.returncode != 0:
                raise RuntimeError(pulled.stderr)
            local = in_process(target, data, min(args.seconds, 10.0))
            user("serve", "stop", name)
        finally:
            stack.stop()
    print(
        json.dumps(
            {
                "workload": f"examples/digits (5 epochs), one row per request, "
                f"{args.replicas} replica(s)",
                "served_one_client": alone,
                "served": served,
                "server_counted": {
                    k: shown[k] for k in ("requests", "answered", "errors", "timeouts", "refused")
                },
                "in_process": local,
                # What a request costs beyond the model's own work, alone and under load
                # (where it is mostly waiting for the 2 cores the clients share).
                "added_p50_ms_one_client": round(alone["p50_ms"] - local["p50_ms"], 2),
                "added_p50_ms": round(served["p50_ms"] - local["p50_ms"], 2),
                "added_p99_ms": round(served["p99_ms"] - local["p99_ms"], 2),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
