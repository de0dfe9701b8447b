"""Replay a cluster trace through Podium's own placement and queueing code.

    python -m scheduler.simulate --nodes NODES.csv --trace TRACE.csv --policy best-fit

Reads the Alibaba "openb" CSVs (Weng et al., "Beware of Fragmentation: Scheduling
GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX ATC 2023) and any
file with the same columns. Podium allocates whole GPUs, so a task asking for a share
of one GPU takes a whole one. A trace with creation, scheduled and deletion times is
replayed in simulated time (arrivals at creation, each running for deletion minus
scheduled); one without times, or `--mode packing`, is packed in arrival order with
nothing ever ending. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import random
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler.policy import POLICIES, Cluster, NodeView, Placement, Request, never_fits_reason
from scheduler.queueing import Pending, plan


@dataclass(frozen=True)
class Task:
    name: str
    request: Request
    arrival: float = 0.0
    duration: float | None = None


def read_nodes(path: Path) -> list[NodeView]:
    nodes = []
    with path.open(newline="") as source:
        for row in csv.DictReader(source):
            gpus = int(row["gpu"])
            cpus = int(row["cpu_milli"]) / 1000
            memory = int(row["memory_mib"])
            nodes.append(
                NodeView(
                    row["sn"],
                    gpus,
                    tuple(range(gpus)),
                    cpus,
                    cpus,
                    memory,
                    memory,
                    gpu_model=row.get("model", ""),
                )
            )
    return nodes


def _time(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def read_tasks(path: Path, speedup: float = 1.0) -> tuple[list[Task], int]:
    """The tasks, and how many rows had to be left out of a timed replay. `speedup`
    divides the arrival times (not the durations): the same work arriving faster."""
    tasks, skipped = [], 0
    with path.open(newline="") as source:
        for row in csv.DictReader(source):
            spec = (row.get("gpu_spec") or "").strip()
            request = Request(
                gpus=int(row["num_gpu"]),
                cpus=int(row["cpu_milli"]) / 1000,
                memory_mb=int(row["memory_mib"]),
                gpu_models=frozenset(spec.split("|")) if spec else frozenset(),
            )
            created = _time(row.get("creation_time"))
            started, deleted = _time(row.get("scheduled_time")), _time(row.get("deletion_time"))
            if "creation_time" in row and None in (created, started, deleted):
                skipped += 1
                continue
            duration = None if created is None else max(0.0, deleted - started)  # type: ignore[operator]
            tasks.append(Task(row["name"], request, (created or 0.0) / speedup, duration))
    tasks.sort(key=lambda t: t.arrival)  # stable: rows keep their order within a time
    return tasks, skipped


def allocation_ratio(cluster: Cluster, total_gpus: int) -> float:
    free = sum(len(n.free_gpus) for n in cluster.nodes.values())
    return (total_gpus - free) / total_gpus if total_gpus else 0.0


def free_gpu_histogram(cluster: Cluster) -> dict[int, int]:
    histogram: dict[int, int] = defaultdict(int)
    for node in cluster.nodes.values():
        histogram[len(node.free_gpus)] += 1
    return dict(sorted(histogram.items()))


def pack(nodes: list[NodeView], tasks: list[Task], policy: str, seed: int) -> dict[str, Any]:
    cluster = Cluster.of(nodes)
    rng = random.Random(seed)
    total = sum(n.total_gpus for n in nodes)
    placed = failed = 0
    first_failure: dict[str, Any] | None = None
    for index, task in enumerate(tasks):
        placement = cluster.place(task.request, policy, rng=rng)
        if placement is None:
            failed += 1
            if first_failure is None and task.request.gpus > 1:
                first_failure = {
                    "task": task.name,
                    "index": index,
                    "gpus": task.request.gpus,
                    "allocation_ratio": round(allocation_ratio(cluster, total), 4),
                    "free_gpus": total - round(allocation_ratio(cluster, total) * total),
                    # Free GPUs on nodes with fewer free than the task asked for:
                    # capacity that exists but is too scattered to use.
                    "fragmented_gpus": sum(
                        len(n.free_gpus)
                        for n in cluster.nodes.values()
                        if 0 < len(n.free_gpus) < task.request.gpus
                    ),
                }
            continue
        cluster.allocate(task.request, placement)
        placed += 1
    return {
        "mode": "packing",
        "policy": policy,
        "tasks": len(tasks),
        "placed": placed,
        "not_placed": failed,
        "first_multi_gpu_failure": first_failure,
        "final_allocation_ratio": round(allocation_ratio(cluster, total), 4),
        "nodes_by_free_gpus": free_gpu_histogram(cluster),
    }


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean": round(statistics.fmean(values), 1),
        "p50": round(_percentile(values, 0.5), 1),
        "p99": round(_percentile(values, 0.99), 1),
    }


def replay(
    nodes: list[NodeView],
    tasks: list[Task],
    policy: str,
    *,
    backfill: bool = True,
    samples: int = 100,
) -> dict[str, Any]:
    cluster = Cluster.of(nodes)
    total = sum(n.total_gpus for n in nodes)
    by_key = {index: task for index, task in enumerate(tasks)}
    arrivals = sorted(by_key, key=lambda k: by_key[k].arrival)
    completions: list[tuple[float, int, Placement]] = []
    pending: dict[int, Pending] = {}
    started: dict[int, float] = {}
    ended: dict[int, float] = {}
    rejected = 0
    series: list[tuple[float, float, int]] = []
    weighted_ratio = 0.0
    weighted_fragments = 0.0
    last_time = tasks[0].arrival if tasks else 0.0
    next_arrival = 0
    while next_arrival < len(arrivals) or completions or pending:
        upcoming = [by_key[arrivals[next_arrival]].arrival] if next_arrival < len(arrivals) else []
        if completions:
            upcoming.append(completions[0][0])
        if not upcoming:  # what is pending can never start
            break
        now = min(upcoming)
        ratio = allocation_ratio(cluster, total)
        free = total - round(ratio * total)
        weighted_ratio += ratio * (now - last_time)
        weighted_fragments += free * (now - last_time)
        last_time = now
        while completions and completions[0][0] <= now:
            _, key, placement = heapq.heappop(completions)
            cluster.release(by_key[key].request, placement)
        while next_arrival < len(arrivals) and by_key[arrivals[next_arrival]].arrival <= now:
            key = arrivals[next_arrival]
            next_arrival += 1
            task = by_key[key]
            if never_fits_reason(task.request, nodes):
                rejected += 1
                continue
            pending[key] = Pending(key, "trace", task.request, task.arrival)
        decided = plan(list(pending.values()), cluster, policy=policy, backfill=backfill)
        for item, placement in decided.placed:
            key = int(item.key)  # type: ignore[call-overload]
            del pending[key]
            started[key] = now
            ended[key] = now + (by_key[key].duration or 0.0)
            heapq.heappush(completions, (ended[key], key, placement))
        series.append((now, allocation_ratio(cluster, total), len(pending)))
    span = (last_time - tasks[0].arrival) if tasks else 0.0
    delays: dict[int, list[float]] = defaultdict(list)
    for key, start in started.items():
        delays[by_key[key].request.gpus].append(start - by_key[key].arrival)
    step = max(1, len(series) // samples)
    return {
        "mode": "replay",
        "policy": policy,
        "backfill": backfill,
        "tasks": len(tasks),
        "started": len(started),
        "rejected_never_fit": rejected,
        "never_started": len(pending),
        "makespan_s": round(max(ended.values(), default=0.0) - (tasks[0].arrival if tasks else 0)),
        "allocation_ratio_mean": round(weighted_ratio / span, 4) if span else 0.0,
        "allocation_ratio_peak": round(max((r for _, r, _ in series), default=0.0), 4),
        "unallocated_gpus_mean": round(weighted_fragments / span, 1) if span else 0.0,
        "allocation_ratio_over_time": [
            {"t": round(t), "ratio": round(r, 4), "queued": q} for t, r, q in series[::step]
        ],
        "queueing_delay_s_by_gpus": {str(g): _summary(v) for g, v in sorted(delays.items())},
        "queueing_delay_s": _summary([d for v in delays.values() for d in v]),
        "completion_time_s": _summary([ended[k] - by_key[k].arrival for k in started]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scheduler.simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nodes", type=Path, required=True)
    parser.add_argument("--trace", type=Path, required=True)
    parser.add_argument("--policy", choices=POLICIES, default="best-fit")
    parser.add_argument("--mode", choices=("auto", "packing", "replay"), default="auto")
    parser.add_argument("--no-backfill", action="store_true", help="strict FIFO in a replay")
    parser.add_argument("--seed", type=int, default=0, help="for the random policy")
    parser.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="divide arrival times by this, to replay at a higher load",
    )
    args = parser.parse_args(argv)
    try:
        nodes = read_nodes(args.nodes)
        tasks, skipped = read_tasks(args.trace, args.speedup)
    except (OSError, KeyError, ValueError) as exc:
        print(f"simulate: cannot read the input: {exc}", file=sys.stderr)
        return 2
    timed = all(t.duration is not None for t in tasks) and bool(tasks)
    mode = ("replay" if timed else "packing") if args.mode == "auto" else args.mode
    if mode == "replay" and not timed:
        print("simulate: this trace has no times; use --mode packing", file=sys.stderr)
        return 2
    if mode == "packing":
        result = pack(nodes, tasks, args.policy, args.seed)
    else:
        random.seed(args.seed)
        result = replay(nodes, tasks, args.policy, backfill=not args.no_backfill)
    result.update(
        {
            "nodes": len(nodes),
            "gpus": sum(n.total_gpus for n in nodes),
            "rows_left_out": skipped,
            "trace": args.trace.name,
            "speedup": args.speedup,
        }
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
