"""Replay a cluster trace through Podium's own placement and queueing code.

    python -m scheduler.simulate --nodes NODES.csv --trace TRACE.csv --policy best-fit

Reads the Alibaba "openb" CSVs (Weng et al., "Beware of Fragmentation: Scheduling
GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX ATC 2023) and any
file with the same columns. A task asking for a share of one GPU (`gpu_milli` under
1000) gets that share, as a session run with `-g 0.25` does (`--whole-gpus`: a whole
GPU instead, to compare); allocation is reported in shares of GPUs (`allocation_ratio`)
and in GPUs that anything holds (`gpus_in_use_ratio`). A trace with creation, scheduled
and deletion times is replayed in simulated time (arrivals at creation, each running
for deletion minus scheduled); one without times, or `--mode packing`, is packed in
arrival order with nothing ever ending. Prints a JSON summary.
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

from scheduler.bound import allocation_bound
from scheduler.policy import (
    DEFAULT_POLICY,
    POLICIES,
    TIE_BREAKS,
    WHOLE,
    Cluster,
    NodeView,
    Placement,
    Request,
    free_share,
    never_fits_reason,
)
from scheduler.queueing import Pending, plan


@dataclass(frozen=True)
class Task:
    name: str
    request: Request
    arrival: float = 0.0
    duration: float | None = None


def read_nodes(path: Path, every: int = 1, offset: int = 0) -> list[NodeView]:
    """The cluster's nodes; with `every` K, only every K-th row (a fraction of it),
    starting at row `offset`."""
    nodes = []
    with path.open(newline="") as source:
        for index, row in enumerate(csv.DictReader(source)):
            if index % every != offset % every:
                continue
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


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as source:
        return list(csv.DictReader(source))


def request_of(row: dict[str, str], whole_gpus: bool = False) -> Request:
    spec = (row.get("gpu_spec") or "").strip()
    gpus = int(row["num_gpu"])
    milli = int(row.get("gpu_milli") or 0) if gpus == 1 else 0
    if 0 < milli < WHOLE and not whole_gpus:
        gpus = 0
    else:
        milli = 0
    return Request(
        gpus=gpus,
        gpu_milli=milli,
        cpus=int(row["cpu_milli"]) / 1000,
        memory_mb=int(row["memory_mib"]),
        gpu_models=frozenset(spec.split("|")) if spec else frozenset(),
    )


def timed(rows: list[dict[str, str]]) -> bool:
    return bool(rows) and "creation_time" in rows[0]


def tasks_in_order(rows: list[dict[str, str]], whole_gpus: bool = False) -> list[Task]:
    """Every row, in the file's order, for packing: times play no part."""
    return [Task(row["name"], request_of(row, whole_gpus)) for row in rows]


def drawn(
    rows: list[dict[str, str]], count: int, seed: int, whole_gpus: bool = False
) -> list[Task]:
    """`count` rows drawn at random with replacement (`random.Random(seed)`), so that a
    file's shape is measured rather than its row order."""
    rng = random.Random(seed)
    return [
        Task(row["name"], request_of(row, whole_gpus))
        for row in (rng.choice(rows) for _ in range(count))
    ]


def tasks_in_time(
    rows: list[dict[str, str]], speedup: float = 1.0, whole_gpus: bool = False
) -> tuple[list[Task], int]:
    """For a timed replay: the rows with all three times, by creation time, and how many
    had to be left out. `speedup` divides the arrival times (not the durations): the
    same work arriving faster."""
    tasks, skipped = [], 0
    for row in rows:
        created = _time(row.get("creation_time"))
        started, deleted = _time(row.get("scheduled_time")), _time(row.get("deletion_time"))
        if created is None or started is None or deleted is None:
            skipped += 1
            continue
        duration = max(0.0, deleted - started)
        tasks.append(Task(row["name"], request_of(row, whole_gpus), created / speedup, duration))
    tasks.sort(key=lambda t: t.arrival)  # stable: rows keep their order within a time
    return tasks, skipped


def allocation_ratio(cluster: Cluster, total_gpus: int) -> float:
    """The share of the cluster's GPU capacity held, shares counted as their fraction."""
    free = sum(free_share(n) for n in cluster.nodes.values())
    return (total_gpus * WHOLE - free) / (total_gpus * WHOLE) if total_gpus else 0.0


def in_use_ratio(cluster: Cluster, total_gpus: int) -> float:
    """The share of the cluster's GPUs that something holds, whole or in part."""
    free = sum(len(n.free_gpus) for n in cluster.nodes.values())
    return (total_gpus - free) / total_gpus if total_gpus else 0.0


def free_gpu_histogram(cluster: Cluster) -> dict[int, int]:
    histogram: dict[int, int] = defaultdict(int)
    for node in cluster.nodes.values():
        histogram[len(node.free_gpus)] += 1
    return dict(sorted(histogram.items()))


def _failure(cluster: Cluster, total: int, index: int, task: Task) -> dict[str, Any]:
    request = task.request
    nodes = cluster.nodes.values()
    if request.shares:
        # Free parts of GPUs too small for the share.
        fragmented = sum(f for n in nodes for _i, f in n.partial if f < request.gpu_milli) / WHOLE
    else:
        # Free GPUs on nodes with fewer free than the task asked for, and the free parts
        # of partly held GPUs: capacity that exists but is too scattered to use.
        fragmented = sum(
            (len(n.free_gpus) if len(n.free_gpus) < request.gpus else 0)
            + sum(f for _i, f in n.partial) / WHOLE
            for n in nodes
        )
    return {
        "task": task.name,
        "index": index,
        "gpus": request.gpus,
        "gpu_milli": request.gpu_milli,
        "gpu_models": sorted(request.gpu_models),
        "allocation_ratio": round(allocation_ratio(cluster, total), 4),
        "gpus_in_use_ratio": round(in_use_ratio(cluster, total), 4),
        "free_gpus": round(sum(free_share(n) for n in nodes) / WHOLE, 3),
        "fragmented_gpus": round(fragmented, 3),
    }


def pack(nodes: list[NodeView], tasks: list[Task], policy: str, seed: int) -> dict[str, Any]:
    """Place the tasks in order, nothing ever ending. A task that no node of the cluster
    could ever hold is counted apart: it is not a failure of the policy."""
    cluster = Cluster.of(nodes)
    rng = random.Random(seed)
    total = sum(n.total_gpus for n in nodes)
    placed = failed = never = 0
    first_gpu: dict[str, Any] | None = None
    first_multi_gpu: dict[str, Any] | None = None
    hopeless: dict[Request, bool] = {}
    for index, task in enumerate(tasks):
        request = task.request
        if request not in hopeless:
            hopeless[request] = never_fits_reason(request, nodes) is not None
        if hopeless[request]:
            never += 1
            continue
        cluster.observe(request)
        placement = cluster.place(request, policy, rng=rng)
        if placement is None:
            failed += 1
            if request.wants_gpu and first_gpu is None:
                first_gpu = _failure(cluster, total, index, task)
            if request.gpus > 1 and first_multi_gpu is None:
                first_multi_gpu = _failure(cluster, total, index, task)
            continue
        cluster.allocate(request, placement)
        placed += 1
    return {
        "mode": "packing",
        "policy": policy,
        "tie_break": TIE_BREAKS[policy],
        "tasks": len(tasks),
        "placed": placed,
        "not_placed": failed,
        "never_fit": never,
        "first_gpu_failure": first_gpu,
        "first_multi_gpu_failure": first_multi_gpu,
        "final_allocation_ratio": round(allocation_ratio(cluster, total), 4),
        "final_gpus_in_use_ratio": round(in_use_ratio(cluster, total), 4),
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
    kept = None  # the head and the node held for it, held again while it waits
    while next_arrival < len(arrivals) or completions or pending:
        upcoming = [by_key[arrivals[next_arrival]].arrival] if next_arrival < len(arrivals) else []
        if completions:
            upcoming.append(completions[0][0])
        if not upcoming:  # what is pending can never start
            break
        now = min(upcoming)
        ratio = allocation_ratio(cluster, total)
        free = total * (1 - ratio)
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
            cluster.observe(task.request)
            pending[key] = Pending(key, "trace", task.request, task.arrival)
        decided = plan(list(pending.values()), cluster, policy=policy, backfill=backfill, kept=kept)
        kept = (decided.head, decided.reserved) if decided.reserved else None
        for item, placement in decided.placed:
            key = int(item.key)  # type: ignore[call-overload]
            del pending[key]
            started[key] = now
            ended[key] = now + (by_key[key].duration or 0.0)
            heapq.heappush(completions, (ended[key], key, placement))
        series.append((now, allocation_ratio(cluster, total), len(pending)))
    span = (last_time - tasks[0].arrival) if tasks else 0.0
    delays: dict[str, list[float]] = defaultdict(list)
    for key, start in started.items():
        request = by_key[key].request
        delays["share" if request.shares else str(request.gpus)].append(start - by_key[key].arrival)
    step = max(1, len(series) // samples)
    return {
        "mode": "replay",
        "policy": policy,
        "tie_break": TIE_BREAKS[policy],
        "backfill": backfill,
        "tasks": len(tasks),
        "started": len(started),
        "never_fit": rejected,
        "never_started": len(pending),
        "makespan_s": round(max(ended.values(), default=0.0) - (tasks[0].arrival if tasks else 0)),
        "allocation_ratio_mean": round(weighted_ratio / span, 4) if span else 0.0,
        "allocation_ratio_peak": round(max((r for _, r, _ in series), default=0.0), 4),
        "unallocated_gpus_mean": round(weighted_fragments / span, 1) if span else 0.0,
        "allocation_ratio_over_time": [
            {"t": round(t), "ratio": round(r, 4), "queued": q} for t, r, q in series[::step]
        ],
        "queueing_delay_s_by_gpus": {
            g: _summary(v) for g, v in sorted(delays.items(), key=lambda i: (len(i[0]), i[0]))
        },
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
    parser.add_argument("--policy", choices=POLICIES, default=DEFAULT_POLICY)
    parser.add_argument("--mode", choices=("auto", "packing", "replay"), default="auto")
    parser.add_argument("--no-backfill", action="store_true", help="strict FIFO in a replay")
    parser.add_argument("--seed", type=int, default=0, help="for the random policy")
    parser.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="divide arrival times by this, to replay at a higher load",
    )
    parser.add_argument(
        "--draw",
        type=int,
        metavar="N",
        help="pack N tasks drawn from the file at random, with replacement",
    )
    parser.add_argument("--draw-seed", type=int, default=42, help="for --draw")
    parser.add_argument(
        "--whole-gpus",
        action="store_true",
        help="a task asking for a share of a GPU takes a whole one",
    )
    parser.add_argument(
        "--nodes-every",
        type=int,
        default=1,
        metavar="K",
        help="keep every K-th node only: a fraction of the cluster",
    )
    parser.add_argument(
        "--nodes-offset",
        type=int,
        default=0,
        metavar="I",
        help="with --nodes-every K, start at the I-th node (another fraction)",
    )
    parser.add_argument(
        "--bound",
        action="store_true",
        help="in packing, also the most any policy could allocate before a GPU request fails",
    )
    args = parser.parse_args(argv)
    if args.nodes_every < 1 or (args.draw is not None and args.draw < 1):
        print("simulate: --nodes-every and --draw take a positive number", file=sys.stderr)
        return 2
    if not 0 <= args.nodes_offset < args.nodes_every:
        print("simulate: --nodes-offset takes 0 to K-1 for --nodes-every K", file=sys.stderr)
        return 2
    try:
        nodes = read_nodes(args.nodes, args.nodes_every, args.nodes_offset)
        rows = read_rows(args.trace)
        for row in rows:  # every row is checked, drawn or not
            request_of(row, args.whole_gpus)
    except (OSError, KeyError, ValueError) as exc:
        print(f"simulate: cannot read the input: {exc}", file=sys.stderr)
        return 2
    mode = args.mode
    if mode == "auto":
        mode = "replay" if timed(rows) and args.draw is None else "packing"
    if mode == "replay" and not timed(rows):
        print("simulate: this trace has no times; use --mode packing", file=sys.stderr)
        return 2
    if mode == "replay" and args.draw is not None:
        print("simulate: --draw is for packing; a replay keeps the trace's times", file=sys.stderr)
        return 2
    skipped = 0
    if mode == "packing":
        tasks = (
            drawn(rows, args.draw, args.draw_seed, args.whole_gpus)
            if args.draw
            else tasks_in_order(rows, args.whole_gpus)
        )
        result = pack(nodes, tasks, args.policy, args.seed)
        if args.bound:
            result["bound"] = allocation_bound(nodes, [t.request for t in tasks])
    else:
        tasks, skipped = tasks_in_time(rows, args.speedup, args.whole_gpus)
        random.seed(args.seed)
        result = replay(nodes, tasks, args.policy, backfill=not args.no_backfill)
    result.update(
        {
            "nodes": len(nodes),
            "gpus": sum(n.total_gpus for n in nodes),
            "rows": len(rows),
            "rows_left_out": skipped,
            "trace": args.trace.name,
            "draw": {"tasks": args.draw, "seed": args.draw_seed} if args.draw else None,
            "speedup": args.speedup,
            "whole_gpus": args.whole_gpus,
        }
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
