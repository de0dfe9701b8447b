"""Which pending sessions start now: a pure function over plain data.

Order: grading sessions before training; within each, fairness between users (the next
session is always that of the user holding the fewest GPUs, then running the fewest
sessions, counting what this round placed, so one user's 500 queued sessions do not
starve the others, CPU-only ones included), and first come, first served within a user.

Backfill: the first session in that order that cannot start is the head. It gets a
reservation on the node most likely to hold it first (the one, among those that could
ever hold it, with the most GPUs free), and later sessions may start now only on other
nodes, so they never take what the head is waiting for. Without run-time estimates this
is how Podium keeps "a later, smaller session may start if it does not delay the
earliest start of the head": nothing is placed on the head's node until it starts.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from scheduler.policy import (
    DEFAULT_POLICY,
    DEFAULT_WEIGHTS,
    WHOLE,
    Cluster,
    Placement,
    Request,
    Weights,
    fits_ever,
    free_share,
)


@dataclass(frozen=True)
class Pending:
    key: Hashable
    user: str
    request: Request
    submitted: float
    grading: bool = False


@dataclass
class Plan:
    placed: list[tuple[Pending, Placement]] = field(default_factory=list)
    waiting: dict[Hashable, str] = field(default_factory=dict)  # key -> why it waits
    head: Hashable | None = None
    reserved: str | None = None  # the node held for the head


def describe(request: Request) -> str:
    parts = [f"{request.gpus} GPU{'s' * (request.gpus != 1)}"] if request.gpus else []
    if request.gpu_milli:
        parts.append(f"{request.gpu_milli / WHOLE:g} of a GPU")
    elif request.gpu_memory_mb:
        parts.append(f"{request.gpu_memory_mb} MiB of a GPU")
    parts += [f"{request.cpus:g} CPU", f"{request.memory_mb} MiB"]
    if request.gpu_models:
        parts.append("model " + "|".join(sorted(request.gpu_models)))
    return ", ".join(parts)


def reservation_for(request: Request, cluster: Cluster, kept: str | None = None) -> str | None:
    """The node the head most likely gets first: `kept` (the node held for it last
    round) while it could still hold it; else, for GPUs, the one with most GPUs free;
    without GPUs, the one with fewest GPUs (so GPU nodes are not held for it), then the
    most memory and CPUs free."""
    if kept is not None:
        node = cluster.nodes.get(kept)
        if node is not None and not node.drained and fits_ever(node, request):
            return kept
    candidates = [n for n in cluster.nodes.values() if not n.drained and fits_ever(n, request)]
    if not candidates:
        return None
    if request.wants_gpu:
        chosen = max(
            candidates,
            key=lambda n: (len(n.free_gpus), free_share(n), n.free_cpus, n.free_memory_mb),
        )
    else:
        chosen = min(candidates, key=lambda n: (n.total_gpus, -n.free_memory_mb, -n.free_cpus))
    return chosen.name


def plan(
    pending: Sequence[Pending],
    cluster: Cluster,
    *,
    held_gpus: dict[str, float] | None = None,
    held_sessions: dict[str, int] | None = None,
    policy: str = DEFAULT_POLICY,
    weights: Weights = DEFAULT_WEIGHTS,
    backfill: bool = True,
    kept: tuple[Hashable, str] | None = None,
) -> Plan:
    """Decide this round; `cluster` is updated with every placement made. `kept`: the
    last round's head and the node held for it, held again while that head waits."""
    result = Plan()
    held: defaultdict[str, float] = defaultdict(float, held_gpus or {})
    running = defaultdict(int, held_sessions or {})
    for grading in (True, False):
        queues: dict[str, deque[Pending]] = defaultdict(deque)
        for item in sorted(
            (p for p in pending if p.grading == grading), key=lambda p: (p.submitted, str(p.key))
        ):
            queues[item.user].append(item)
        # A shape that failed this round fails again: the cluster only fills up.
        failed: set[Request] = set()
        while queues:
            user = min(queues, key=lambda u: (held[u], running[u], queues[u][0].submitted))
            item = queues[user].popleft()
            if not queues[user]:
                del queues[user]
            if result.head is not None and not backfill:
                result.waiting[item.key] = f"queued behind {result.head}"
                continue
            exclude = frozenset({result.reserved}) if result.reserved else frozenset()
            placement = None
            if item.request not in failed:
                placement = cluster.place(item.request, policy, weights=weights, exclude=exclude)
            if placement is None:
                failed.add(item.request)
                wanted = describe(item.request)
                if result.head is None:
                    result.head = item.key
                    result.reserved = reservation_for(
                        item.request,
                        cluster,
                        kept[1] if kept is not None and kept[0] == item.key else None,
                    )
                    where = f" ({result.reserved} is held for it)" if result.reserved else ""
                    result.waiting[item.key] = f"first in line for {wanted}{where}"
                else:
                    result.waiting[item.key] = f"waiting for {wanted}"
                continue
            cluster.allocate(item.request, placement)
            held[user] += placement.gpu_milli / WHOLE or item.request.gpus
            running[user] += 1
            result.placed.append((item, placement))
    return result
