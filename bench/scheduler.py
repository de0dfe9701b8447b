"""Scheduler benchmarks on the Alibaba openb traces (Weng et al., USENIX ATC 2023).

    .venv/bin/python bench/scheduler.py [--kills 20] [--sessions 2000]

Prints one JSON document:
- policy: placement decisions per second of the pure policy on the 1,213-node cluster;
- packing: the allocation ratio when the first multi-GPU task of `multigpu20` cannot
  be placed, per policy;
- replay: the `default` trace replayed at higher loads (arrivals sped up), mean and p99
  queueing delay of 8-GPU tasks, per policy;
- live_loop: sessions placed per second by the real loop (SQLite and Redis);
- failover: seconds from `kill -9` of the leading scheduler to the standby's lease.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis import Redis

from portal.redis_server import EmbeddedRedis
from scheduler.policy import DEFAULT_WEIGHTS, POLICIES, Cluster, Placement, place
from scheduler.simulate import pack, read_nodes, read_rows, replay, tasks_in_order, tasks_in_time

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "alibaba-openb"
NODES = TRACES / "openb_node_list_gpu_node.csv"


def policy_speed(seconds: float = 3.0) -> dict:
    nodes = read_nodes(NODES)
    tasks = tasks_in_order(read_rows(TRACES / "openb_pod_list_multigpu20.csv"))
    result = {}
    for policy in POLICIES:
        rng = random.Random(0)
        decisions, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            cluster = Cluster.of(nodes)
            for task in tasks:
                chosen = cluster.place(task.request, policy, rng=rng)
                decisions += 1
                if chosen is not None:
                    cluster.allocate(task.request, chosen)
        result[policy] = round(decisions / (time.perf_counter() - started))
    # The stateless entry point indexes the whole cluster on every call.
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < 1.0:
        place(tasks[calls % len(tasks)].request, nodes)
        calls += 1
    result["best-fit, stateless place()"] = round(calls / (time.perf_counter() - started))
    result.update(locality_speed(nodes, tasks, seconds))
    return {"nodes": len(nodes), "decisions_per_second": result, "goal": 5000}


def locality_speed(nodes: list, tasks: list, seconds: float) -> dict:
    """Requests that carry an image and a dataset version, on nodes that hold some
    (20 environments, 50 datasets spread over the cluster): the locality index side by
    side with scoring every node, in the same run."""
    held = [
        dataclasses.replace(
            node,
            images=frozenset({f"podium/env:{index % 20}"}),
            datasets=frozenset({f"data{index % 50}:1", f"data{(index + 7) % 50}:1"}),
        )
        for index, node in enumerate(nodes)
    ]
    wanting = [
        dataclasses.replace(
            task.request,
            image=f"podium/env:{number % 23}",  # some environments no node holds yet
            datasets=frozenset({f"data{number % 53}:1"}),
        )
        for number, task in enumerate(tasks)
    ]
    result = {}
    for label, method in (
        ("best-fit, image and datasets (locality index)", "_best_with_locality"),
        ("best-fit, image and datasets (scoring every node)", "_best_with_locality_by_scan"),
    ):
        decisions, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            cluster = Cluster.of(held)
            decide = getattr(cluster, method)
            for request in wanting:
                chosen = decide(request, DEFAULT_WEIGHTS, frozenset())
                decisions += 1
                if chosen is not None:
                    gpus = tuple(sorted(chosen.free_gpus)[: request.gpus])
                    cluster.allocate(request, Placement(chosen.name, gpus))
        result[label] = round(decisions / (time.perf_counter() - started))
    return result


def packing() -> dict:
    nodes = read_nodes(NODES)
    tasks = tasks_in_order(read_rows(TRACES / "openb_pod_list_multigpu20.csv"))
    result = {}
    for policy in POLICIES:
        seeds = range(5) if policy == "random" else range(1)
        runs = [pack(nodes, tasks, policy, seed) for seed in seeds]
        ratios = [
            r["first_multi_gpu_failure"]["allocation_ratio"]
            for r in runs
            if r["first_multi_gpu_failure"]
        ]
        result[policy] = {
            "allocation_ratio_at_first_multi_gpu_failure": round(statistics.fmean(ratios), 4)
            if ratios
            else None,
            "failing_task_gpus": runs[0]["first_multi_gpu_failure"]["gpus"]
            if runs[0]["first_multi_gpu_failure"]
            else None,
            "final_allocation_ratio": round(
                statistics.fmean(r["final_allocation_ratio"] for r in runs), 4
            ),
            "runs": len(runs),
        }
    return result


def replays(speedups: list[float]) -> dict:
    nodes = read_nodes(NODES)
    result: dict = {}
    for speedup in speedups:
        tasks, _ = tasks_in_time(read_rows(TRACES / "openb_pod_list_default.csv"), speedup)
        per_policy = {}
        for policy in POLICIES:
            random.seed(0)
            summary = replay(nodes, tasks, policy)
            eight = summary["queueing_delay_s_by_gpus"].get("8", {})
            per_policy[policy] = {
                "queueing_delay_8_gpu_mean_s": eight.get("mean"),
                "queueing_delay_8_gpu_p99_s": eight.get("p99"),
                "queueing_delay_all_mean_s": summary["queueing_delay_s"].get("mean"),
                "allocation_ratio_peak": summary["allocation_ratio_peak"],
            }
        result[f"speedup {speedup:g}"] = per_policy
    return result


def live_loop(redis_url: str, sessions: int) -> dict:
    from flask_migrate import upgrade

    from portal import create_app
    from portal.extensions import db
    from portal.models import SessionStatus
    from portal.services import auth, nodes
    from portal.services import sessions as session_service
    from scheduler.loop import Scheduler

    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            {
                "INSTANCE_PATH": folder,
                "SECRET_KEY": "bench",
                "REDIS_URL": redis_url,
                "NODE_JOIN_TOKEN": "bench",
                "NODE_LOST_AFTER_SECONDS": 3600,
            }
        )
        with app.app_context():
            upgrade()
            for index in range(160):
                nodes.register_node(
                    "bench",
                    "",
                    "bench",
                    name=f"node-{index:02d}",
                    hostname="x",
                    cpu_count=256,
                    memory_mb=10**7,
                    runtime="docker",
                    gpus=[{"index": i, "simulated": True} for i in range(8)],
                )
            users = [auth.create_user(f"user{u}", "password") for u in range(10)]  # any level
            for number in range(sessions):
                session_service.create_session(
                    users[number % 10],
                    session_service.SessionRequest(
                        entry="train.py", code_digest="0" * 64, gpus=number % 2, memory_mb=1024
                    ),
                )
            scheduler = Scheduler(app, Redis.from_url(redis_url))
            started, passes, placed = time.perf_counter(), 0, 0
            while placed < sessions:
                count = len(scheduler.run_pass())
                passes += 1
                placed += count
                if count == 0:
                    break
            elapsed = time.perf_counter() - started
            left = (
                db.session.query(session_service.Session)
                .filter_by(status=SessionStatus.PENDING.value)
                .count()
            )
        return {
            "sessions": sessions,
            "nodes": 160,
            "gpus": 160 * 8,
            "placed": placed,
            "still_pending": left,
            "passes": passes,
            "seconds": round(elapsed, 2),
            "sessions_per_second": round(placed / elapsed),
            "database": "sqlite",
            "goal": 100,
        }


def failover(redis_url: str, kills: int) -> dict:
    from flask_migrate import upgrade

    from portal import create_app, keys

    redis = Redis.from_url(redis_url)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/podium.db"
        app = create_app(
            {
                "INSTANCE_PATH": folder,
                "SECRET_KEY": "bench",
                "SQLALCHEMY_DATABASE_URI": url,
                "REDIS_URL": redis_url,
            }
        )
        with app.app_context():
            upgrade()
        env = dict(
            os.environ,
            DATABASE_URL=url,
            REDIS_URL=redis_url,
            PODIUM_INSTANCE=folder,
            PODIUM_SECRET_KEY="bench",
            PODIUM_SCHEDULER_LEASE_SECONDS="2",
        )

        def start():
            return subprocess.Popen(
                [sys.executable, "-m", "scheduler"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        def leader() -> int | None:
            holder = redis.get(keys.SCHEDULER_LEADER)
            return int(holder.decode().split(":")[1]) if holder else None

        processes = {p.pid: p for p in (start(), start())}
        times = []
        try:
            while leader() not in processes:
                time.sleep(0.02)
            for _ in range(kills):
                time.sleep(1.0)  # the standby is up and polling
                victim = leader()
                assert victim is not None
                os.kill(victim, 9)
                killed = time.monotonic()
                while leader() in (None, victim):
                    time.sleep(0.005)
                times.append(time.monotonic() - killed)
                processes.pop(victim).wait()
                replacement = start()
                processes[replacement.pid] = replacement
        finally:
            for process in processes.values():
                process.kill()
                process.wait()
    return {
        "kills": kills,
        "lease_seconds": 2.0,
        "takeover_median_s": round(statistics.median(times), 3),
        "takeover_max_s": round(max(times), 3),
        "goal_s": 3.0,
        "each_s": [round(t, 3) for t in times],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--speedups", default="1,1000,3000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, EmbeddedRedis(Path(folder)) as server:
        result = {
            "policy": policy_speed(),
            "packing_multigpu20": packing(),
            "replay_default": replays([float(s) for s in args.speedups.split(",")]),
            "live_loop": live_loop(server.url, args.sessions),
            "failover": failover(server.url, args.kills),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
