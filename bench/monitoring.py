"""Monitoring's costs, in one run:

- overhead on a training loop: the same CPU-bound script (numpy matrix products, a
  fixed amount of work) timed alone and while the node's monitor samples it and ships
  the samples over HTTP to a server on loopback, alternating, several rounds; at the
  default interval (5 s) and at 1 s. Goal: at most 1% slower;
- storage per session-day: a day of samples every 5 s of a session holding 8 GPUs (4
  readings each, CPU and memory: 34 series), stored through the portal's own code in
  the batches the agent sends (3 samples), in SQLite: bytes and rows;
- the dashboard with 1,000 nodes x 8 GPUs and 30 days of the cluster's history (one
  sample a minute), 5,000 users' sessions with their utilisation, 60% of the GPUs held:
  `GET /api/v1/cluster?span=30d`, `GET /cluster?span=30d` (the page) and
  `GET /api/v1/cluster/gpus`, in-process, median of 15. Goal: at most 300 ms.

    .venv/bin/python bench/monitoring.py [--rounds 4] [--work-seconds 8] [--quick]
        [--parts storage,dashboard,overhead]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRAIN = """
import sys, time
import numpy as np
rng = np.random.default_rng(0)
a = rng.standard_normal((256, 256))
repeats = int(sys.argv[1])
started = time.perf_counter()
for _ in range(repeats):
    b = a @ a
    a = b / np.abs(b).max()
print(time.perf_counter() - started, flush=True)
"""


# Overhead ------------------------------------------------------------------------------


class Portal(BaseHTTPRequestHandler):
    """Takes the samples as the portal would (answers their count)."""

    received = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Portal.received += len(body["samples"])
        answer = json.dumps({"accepted": len(body["samples"])}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def calibrate(script: Path, seconds: float) -> int:
    probe = subprocess.run(
        [sys.executable, str(script), "200"], capture_output=True, text=True, check=True
    )
    return max(200, int(200 * seconds / float(probe.stdout)))


def timed_run(script: Path, repeats: int, interval: float | None, url: str) -> float:
    """The training loop's own time for its work, with the monitor sampling it every
    `interval` seconds (None: not monitored)."""
    from nodes.client import PortalClient
    from nodes.monitor import ResourceMonitor
    from nodes.probe import Nvml
    from nodes.runtime import RunSpec
    from nodes.runtime.local import LocalRun

    process = subprocess.Popen(
        [sys.executable, str(script), str(repeats)], stdout=subprocess.PIPE, text=True
    )
    monitor = None
    if interval is not None:
        spec = RunSpec(
            session_id=1,
            ident="bench/1",
            entry="train.py",
            args=[],
            code_dir=script.parent,
            output_dir=script.parent,
            gpu_indices=[],
            cpus=1,
            memory_mb=1024,
        )
        monitor = ResourceMonitor(PortalClient(url), Nvml(), interval=interval)
        monitor.watch(1, LocalRun(spec, process))  # type: ignore[arg-type]
    out, _ = process.communicate()
    if monitor is not None:
        monitor.finish(1)
        monitor.close()
    return float(out.strip())


def overhead(rounds: int, work_seconds: float) -> dict:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "train.py"
        script.write_text(TRAIN)
        repeats = calibrate(script, work_seconds)
        times: dict[str, list[float]] = {"off": [], "5s": [], "1s": []}
        for _ in range(rounds):
            for label, interval in (("off", None), ("5s", 5.0), ("1s", 1.0)):
                times[label].append(timed_run(script, repeats, interval, url))
    server.shutdown()
    off = statistics.median(times["off"])
    return {
        "work_seconds": round(off, 3),
        "rounds": rounds,
        "seconds": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
        "slower_at_5s_percent": round((statistics.median(times["5s"]) / off - 1) * 100, 2),
        "slower_at_1s_percent": round((statistics.median(times["1s"]) / off - 1) * 100, 2),
        "samples_received": Portal.received,
        "goal_percent": 1.0,
    }


# Storage and the dashboard -------------------------------------------------------------


def make_app(root: Path):
    from flask_migrate import upgrade

    from portal import create_app

    instance = root / "instance"
    instance.mkdir()
    app = create_app(
        {
            "INSTANCE_PATH": str(instance),
            "SECRET_KEY": secrets.token_hex(16),
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{instance / 'podium.db'}",
            "ARTIFACT_ROOT": str(instance / "artifacts"),
            "REDIS_URL": None,
            "WTF_CSRF_ENABLED": False,
        }
    )
    with app.app_context():
        upgrade()
    return app


def storage(root: Path, seconds: int) -> dict:
    from sqlalchemy import func, select

    from portal.extensions import db
    from portal.models import (
        Gpu,
        Level,
        Node,
        ScalarChunk,
        ScalarSeries,
        ScalarSummaryBlock,
        Session,
        SessionStatus,
        SessionUsage,
    )
    from portal.services import monitoring
    from portal.services.auth import create_user
    from portal.services.sessions import SessionRequest, create_session

    app = make_app(root)
    with app.app_context():
        user = create_user("ada", "password-of-ada", level=Level.TRUSTED)
        node = Node(name="n", token_hash="x" * 64, cpu_count=64, memory_mb=1 << 20)
        db.session.add(node)
        db.session.flush()
        db.session.add_all(Gpu(node_id=node.id, index=i, model="H100") for i in range(8))
        db.session.commit()
        session = create_session(
            user, SessionRequest(entry="train.py", code_digest="0" * 64, gpus=8), redis=None
        )
        session.status, session.node_id = SessionStatus.RUNNING.value, node.id
        session.gpu_indices = ",".join(map(str, range(8)))
        db.session.commit()
        samples = [
            {
                "t": t,
                "cpu_percent": 95.0 + (t % 7),
                "memory_mb": 20_000.0 + (t % 300),
                "gpus": [
                    {
                        "index": i,
                        "utilization_percent": (t // 5 + i) % 101,
                        "memory_used_mb": 60_000 + (t % 1000),
                        "temperature_c": 60 + (t // 5) % 20,
                        "power_w": 300.0 + (t % 97),
                    }
                    for i in range(8)
                ],
            }
            for t in range(0, seconds, 5)
        ]
        started = time.perf_counter()
        for at in range(0, len(samples), 3):
            monitoring.record(db.session.get(Session, session.id), samples[at : at + 3])
        took = time.perf_counter() - started
        chunk_bytes = db.session.scalar(select(func.sum(func.length(ScalarChunk.data)))) or 0
        block_bytes = db.session.scalar(select(func.sum(func.length(ScalarSummaryBlock.data)))) or 0
        tail_bytes = db.session.scalar(select(func.sum(func.length(ScalarSeries.summary_tail))))
        rows = {
            "scalar_chunks": db.session.scalar(select(func.count(ScalarChunk.id))),
            "scalar_summary_blocks": db.session.scalar(
                select(func.count()).select_from(ScalarSummaryBlock)
            ),
            "scalar_series": db.session.scalar(select(func.count()).select_from(ScalarSeries)),
            "session_usage": db.session.scalar(select(func.count()).select_from(SessionUsage)),
        }
        points = len(samples) * 34
        total = chunk_bytes + block_bytes + (tail_bytes or 0)
        return {
            "seconds_of_samples": seconds,
            "samples": len(samples),
            "series": 34,
            "points": points,
            "bytes": total,
            "bytes_per_session_day": round(total * 86400 / seconds),
            "bytes_per_point": round(total / points, 2),
            "rows": rows,
            "requests": -(-len(samples) // 3),
            "ms_per_request": round(took * 1000 / -(-len(samples) // 3), 2),
        }


def dashboard(root: Path, nodes: int, days: int, users: int, runs: int) -> dict:
    from sqlalchemy import insert

    from portal.extensions import db
    from portal.models import (
        Allocation,
        ClusterSample,
        Gpu,
        Node,
        Session,
        SessionUsage,
        User,
        UserUsage,
    )
    from portal.services.auth import create_user
    from portal.timeutil import utcnow

    app = make_app(root)
    with app.app_context():
        admin = create_user("root", "password-of-root")
        admin.level = "admin"
        db.session.commit()
        now = utcnow().replace(second=0, microsecond=0)
        connection = db.session.connection()
        connection.execute(
            insert(User),
            [
                {"username": f"u{i}", "password_hash": "x", "next_session_number": runs + 1}
                for i in range(users)
            ],
        )
        user_ids = [u.id for u in db.session.query(User.id).filter(User.username != "root")]
        connection.execute(
            insert(Node),
            [
                {
                    "name": f"node-{i:04d}",
                    "token_hash": f"{i:064x}",
                    "cpu_count": 64,
                    "memory_mb": 512_000,
                    "status": "ready" if i % 50 else "drained",
                    "sample": {
                        "gpus": [
                            {
                                "index": g,
                                "utilization_percent": (i + g * 13) % 101,
                                "memory_used_mb": 40_000,
                            }
                            for g in range(8)
                        ]
                    },
                }
                for i in range(nodes)
            ],
        )
        node_ids = [n.id for n in db.session.query(Node.id).order_by(Node.id)]
        connection.execute(
            insert(Gpu),
            [
                {
                    "node_id": n,
                    "index": g,
                    "uuid": f"GPU-{n}-{g}",
                    "model": "A100-SXM4-80GB",
                    "memory_mb": 81920,
                }
                for n in node_ids
                for g in range(8)
            ],
        )
        sessions = []
        for number in range(1, runs + 1):
            for user_id in user_ids:
                sessions.append(
                    {
                        "user_id": user_id,
                        "number": number,
                        "entry": "train.py",
                        "code_digest": "0" * 64,
                        "status": "completed",
                        "gpus": 1,
                        "created_at": now,
                    }
                )
        connection.execute(insert(Session), sessions)
        session_ids = [s.id for s in db.session.query(Session.id).order_by(Session.id)]
        connection.execute(
            insert(SessionUsage),
            [
                {
                    "session_id": s,
                    "samples": 100,
                    "gpu_samples": 100,
                    "gpu_utilization_sum": float((s * 37) % 100) * 100,
                    "last_second": 500,
                }
                for s in session_ids
            ],
        )
        # Each user's recent averages, as the sessions' ends append them.
        recent: dict[int, list[float]] = {}
        for session_id, user_id in db.session.query(Session.id, Session.user_id).order_by(
            Session.id
        ):
            recent.setdefault(user_id, []).append(float((session_id * 37) % 100))
        connection.execute(
            insert(UserUsage),
            [{"user_id": u, "recent": values[-100:]} for u, values in recent.items()],
        )
        # 60% of the GPUs held, by the newest sessions (marked running).
        held = [(n, g) for n in node_ids for g in range(8)][: int(nodes * 8 * 0.6)]
        running = session_ids[-len(held) :]
        connection.execute(
            Session.__table__.update()
            .where(Session.id.in_(running))
            .values(status="running", started_at=now)
        )
        connection.execute(
            insert(Allocation),
            [
                {"session_id": s, "node_id": n, "gpu_index": g}
                for s, (n, g) in zip(running, held, strict=True)
            ],
        )
        minutes = days * 24 * 60
        connection.execute(
            insert(ClusterSample),
            [
                {
                    "at": now - timedelta(minutes=m),
                    "gpus": nodes * 8,
                    "gpus_allocated": int(nodes * 8 * (0.5 + 0.4 * ((m // 60) % 24) / 24)),
                    "gpus_reporting": int(nodes * 8 * 0.5),
                    "gpus_busy": int(nodes * 8 * 0.3),
                    "nodes_ready": nodes,
                    "nodes_drained": 0,
                    "nodes_lost": 0,
                }
                for m in range(minutes)
            ],
        )
        db.session.commit()
        from portal.services import auth

        token = auth.issue_token(admin, ttl=timedelta(days=1), label="bench")
        admin_id = admin.id
        db.session.remove()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    with client.session_transaction() as browser:
        browser["_user_id"] = str(admin_id)
        browser["_fresh"] = True

    def median_ms(path: str, **kwargs) -> tuple[float, int]:
        times, size = [], 0
        for _ in range(15):
            started = time.perf_counter()
            response = client.get(path, **kwargs)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (path, response.status_code)
            size = len(response.data)
        return round(statistics.median(times), 1), size

    api_ms, api_bytes = median_ms("/api/v1/cluster?span=30d", headers=headers)
    day_ms, _ = median_ms("/api/v1/cluster?span=1d", headers=headers)
    page_ms, page_bytes = median_ms("/cluster?span=30d")
    plot_ms, _ = median_ms("/cluster/plot.json?span=30d")
    gpus_ms, gpus_bytes = median_ms("/api/v1/cluster/gpus", headers=headers)
    return {
        "nodes": nodes,
        "gpus": nodes * 8,
        "days_of_history": days,
        "cluster_samples": minutes,
        "users": users,
        "sessions_with_utilisation": len(session_ids),
        "api_cluster_30d_ms": api_ms,
        "api_cluster_30d_bytes": api_bytes,
        "api_cluster_1d_ms": day_ms,
        "page_cluster_30d_ms": page_ms,
        "page_cluster_30d_bytes": page_bytes,
        "page_plot_30d_ms": plot_ms,
        "api_gpustat_ms": gpus_ms,
        "api_gpustat_bytes": gpus_bytes,
        "goal_ms": 300,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--work-seconds", type=float, default=8.0)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a try")
    parser.add_argument(
        "--parts", default="storage,dashboard,overhead", help="which measures, comma-separated"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    logging_off()
    result: dict = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as folder:
        root = Path(folder)
        (root / "a").mkdir()
        (root / "b").mkdir()
        if "storage" in parts:
            result["storage"] = storage(root / "a", 3600 if args.quick else 86400)
        if "dashboard" in parts:
            result["dashboard"] = (
                dashboard(root / "b", 100, 3, 100, 10)
                if args.quick
                else dashboard(root / "b", 1000, 30, 5000, 20)
            )
    if "overhead" in parts:
        result["overhead"] = overhead(2 if args.quick else args.rounds, args.work_seconds)
    print(json.dumps(result, indent=2))


def logging_off() -> None:
    import logging

    logging.disable(logging.WARNING)


if __name__ == "__main__":
    main()
