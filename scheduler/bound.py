"""How far any policy could pack a sequence of tasks before a GPU request fails: an
upper bound that a placement policy's result is measured against.

The tasks that ask for GPUs, in order, are relaxed into a linear program over the
cluster's node classes (nodes of one GPU model, GPU count, CPUs and memory): a prefix
of them is *feasible* when its tasks can be split among the classes each could run on
(a task's GPU model, and a node of the class holding it when empty) within each class's
GPUs, CPUs and memory, with at most one task per node that asks for more than half of
the node's GPUs. Any real placement of the prefix is such a split, so the first
infeasible prefix is a task where every policy has failed by then, and the GPUs asked
for before it are the most any could have allocated. Tasks without GPUs are left out,
which only loosens the bound (a policy could not place them all either). A share of a
GPU counts as its fraction of a GPU. The bound needs SciPy (HiGHS); without it there is
none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from scheduler.policy import NodeView, Request, fits_ever, gpu_amount


def _class(node: NodeView) -> tuple[str, int, float, int]:
    return (node.gpu_model, node.total_gpus, node.total_cpus, node.total_memory_mb)


def allocation_bound(nodes: Sequence[NodeView], requests: Sequence[Request]) -> dict[str, Any]:
    try:
        import numpy as np
        from scipy.optimize import linprog
    except ImportError:
        return {"allocation_ratio": None, "reason": "SciPy is not installed"}
    total = sum(n.total_gpus for n in nodes)
    sizes = Counter(_class(n) for n in nodes)
    classes = list(sizes)
    example = {_class(n): n for n in nodes}
    # Tasks that some node could hold (the others are counted apart), with GPUs.
    wanted = [
        (index, r)
        for index, r in enumerate(requests)
        if r.wants_gpu and any(fits_ever(example[c], r) for c in classes)
    ]
    if not wanted or not total:
        return {"allocation_ratio": None, "reason": "no task asks for GPUs some node has"}
    homes: dict[Request, list[int]] = {}

    def _amount(request: Request) -> float:
        # A share by memory: its fraction of the first GPU that could hold it.
        return gpu_amount(request, example[classes[homes[request][0]]].gpu_memory_mb)

    for _index, request in wanted:
        if request not in homes:
            homes[request] = [i for i, c in enumerate(classes) if fits_ever(example[c], request)]

    def feasible(count: int) -> bool:
        demand = Counter(request for _index, request in wanted[:count])
        kinds = list(demand)
        pairs = [(k, c) for k, request in enumerate(kinds) for c in homes[request]]
        on_class = np.zeros((4 * len(classes), len(pairs)))
        of_kind = np.zeros((len(kinds), len(pairs)))
        for column, (k, c) in enumerate(pairs):
            request = kinds[k]
            of_kind[k, column] = 1
            on_class[4 * c, column] = gpu_amount(request, example[classes[c]].gpu_memory_mb)
            on_class[4 * c + 1, column] = request.cpus
            on_class[4 * c + 2, column] = request.memory_mb
            on_class[4 * c + 3, column] = 1 if 2 * request.gpus > classes[c][1] else 0
        room = []
        for kind in classes:
            _model, gpus, cpus, memory = kind
            room += [sizes[kind] * gpus, sizes[kind] * cpus, sizes[kind] * memory, sizes[kind]]
        solved = linprog(
            np.zeros(len(pairs)),
            A_ub=on_class,
            b_ub=np.array(room, dtype=float),
            A_eq=of_kind,
            b_eq=np.array([demand[k] for k in kinds], dtype=float),
            bounds=(0, None),
            method="highs",
        )
        return bool(solved.status == 0)

    if feasible(len(wanted)):
        allocated = sum(_amount(r) for _index, r in wanted)
        return {"allocation_ratio": round(allocated / total, 4), "task_index": None}
    low, high = 0, len(wanted)  # low is feasible, high is not
    while high - low > 1:
        middle = (low + high) // 2
        if feasible(middle):
            low = middle
        else:
            high = middle
    allocated = sum(_amount(r) for _index, r in wanted[: high - 1])
    return {"allocation_ratio": round(allocated / total, 4), "task_index": wanted[high - 1][0]}
