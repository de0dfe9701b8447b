"""What the `fgd` policy knows about demand: the mix of recent requests, how many GPUs a
node's state would leave unusable to it, and which kinds of node each kind of request
should take so that scarce GPU models stay for the requests that need them.

Fragmentation (Weng et al., "Beware of Fragmentation", USENIX ATC 2023, generalised to
GPU models): a node's free GPUs are *stranded* for a kind of request when the node
cannot hold it (too few GPUs, CPUs or memory free, or not a model it accepts). The
fragmentation of a node is its free GPUs times the share of the demand it cannot hold:
the GPUs that the next request, drawn from the recent mix, is expected to find
unusable. With shares of GPUs (as in the paper): for a kind of request the node can
hold, the free parts of its partly held GPUs count as stranded when they are too small
for it (for a request of whole GPUs, all of them); for one it cannot hold, all its free
capacity does. A placement goes where it adds the least fragmentation.

Scarcity: fragmentation alone sends a request that accepts any model to whichever node
it fits best, and on a cluster where the small nodes carry the rare models (P100, T4)
those are taken first and the requests that can only run there starve. `ClassPlan`
splits the recent mix over the node classes (nodes alike in GPU model, GPU count, CPUs
and memory) with a linear program that maximises how much of the mix the free
resources can hold, each kind of request only on classes that could hold it. Where
shapes are bound to GPU models, a request then goes to the class furthest behind the
share the plan gives it; where only GPUs, CPUs and memory bound them, it keeps off the
classes planned for kinds with fewer choices; either way, within the classes it may
take, to where it adds the least fragmentation.

Pure: no database, no clock; the live loop and the simulator feed it the same way.
"""

from __future__ import annotations

import bisect
import functools
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scheduler.policy import NodeView, Request

# How many recent requests make up the mix.
WINDOW = 2000
# Requests between two takes of the mix (and so two solutions of the class plan), once
# it has that many; before, it is taken again at every doubling.
REFRESH = 1000
# Placements between two solutions of the class plan, whatever arrives (200 solved
# twice as often for no better packing).
REPLAN_EVERY = 400

WHOLE = 1000  # a GPU, in the thousandths that shares are counted in

# GPU model, GPUs, CPUs, memory (MiB), each GPU's memory (MiB)
NodeClass = tuple[str, int, float, int, int]
# Whole GPUs, CPUs, memory (MiB), GPU models, a share of one GPU in thousandths, or as
# memory of one GPU (MiB)
Shape = tuple[int, float, int, frozenset[str], int, int]
# GPU model, free GPUs, CPUs, memory (MiB), the free thousandths of partly held GPUs
# (sorted), each GPU's memory (MiB)
State = tuple[str, int, float, int, tuple[int, ...], int]


def node_class(node: NodeView) -> NodeClass:
    return (
        node.gpu_model,
        node.total_gpus,
        node.total_cpus,
        node.total_memory_mb,
        node.gpu_memory_mb,
    )


def shape(request: Request) -> Shape:
    """The request's resources only: what the mix counts."""
    return (
        request.gpus,
        request.cpus,
        request.memory_mb,
        request.gpu_models,
        request.gpu_milli,
        request.gpu_memory_mb,
    )


def share_need(milli: int, gpu_memory: int, memory_of_gpu: int) -> int:
    """Thousandths of a GPU with `memory_of_gpu` (MiB) that a share of `milli`
    thousandths, or of `gpu_memory` MiB, needs; over WHOLE when such a GPU cannot hold
    it (a share by memory of a GPU whose memory is not known)."""
    if milli or not gpu_memory:
        return milli
    if not memory_of_gpu:
        return WHOLE + 1
    return -(-gpu_memory * WHOLE // memory_of_gpu)


@functools.lru_cache(maxsize=2**16)
def share_taken(
    free: int, partial: tuple[int, ...], need: int
) -> tuple[int, tuple[int, ...]] | None:
    """A node state's free GPUs and partly free thousandths (sorted) once a share of
    `need` is placed as `share_gpu` places it; None when it has no room."""
    if need > WHOLE:
        return None
    at = bisect.bisect_left(partial, need)
    if at < len(partial):
        rest = partial[:at] + partial[at + 1 :]
        left = partial[at] - need
        return free, tuple(sorted((*rest, left))) if left else rest
    if not free:
        return None
    return free - 1, tuple(sorted((*partial, WHOLE - need))) if need < WHOLE else partial


@dataclass
class Demand:
    """The recent requests that asked for GPUs, as a mix of shapes with their shares."""

    window: int = WINDOW
    recent: deque[Shape] = field(default_factory=deque)
    counts: Counter[Shape] = field(default_factory=Counter)
    seen: int = 0  # requests observed
    version: int = 0  # moves each time the mix is taken again
    _mix: tuple[tuple[Shape, float], ...] = ()
    _taken_at: int = 0  # `seen` when it was

    def observe(self, request: Request) -> None:
        if not request.wants_gpu:
            return
        kind = shape(request)
        self.recent.append(kind)
        self.counts[kind] += 1
        if len(self.recent) > self.window:
            gone = self.recent.popleft()
            self.counts[gone] -= 1
            if not self.counts[gone]:
                del self.counts[gone]
        self.seen += 1

    def mix(self) -> tuple[tuple[Shape, float], ...]:
        if self.seen - self._taken_at >= min(REFRESH, max(1, self._taken_at)):
            total = len(self.recent)
            self._mix = tuple((kind, count / total) for kind, count in self.counts.items())
            self._taken_at = self.seen
            self.version += 1
            self._columns = None
        return self._mix

    _columns: tuple[Any, ...] | None = None
    by_memory: bool = False  # some shape asks for a share by GPU memory

    def columns(self) -> tuple[Any, ...]:
        """The mix as arrays (whole GPUs, shares in thousandths, shares as GPU memory,
        CPUs, memory, shares of the mix, and per GPU model whether each shape accepts
        it), for `stranded`."""
        mix = self.mix()
        if self._columns is None:
            import numpy as np

            shapes = [kind for kind, _share in mix]
            models = {m for kind in shapes for m in kind[3]}
            self._columns = (
                np.array([k[0] for k in shapes], dtype=float),
                np.array([k[4] for k in shapes], dtype=float),
                np.array([k[5] for k in shapes], dtype=float),
                np.array([k[1] for k in shapes], dtype=float),
                np.array([k[2] for k in shapes], dtype=float),
                np.array([share for _kind, share in mix], dtype=float),
                {m: np.array([not k[3] or m in k[3] for k in shapes], dtype=bool) for m in models},
                np.array([not k[3] for k in shapes], dtype=bool),  # those that accept any model
            )
            self.by_memory = any(kind[5] for kind in shapes)
        return self._columns


def stranded(demand: Demand, state: State) -> float:
    """The GPUs of a node in `state` that the demand's next request is expected to find
    unusable: its fragmentation."""
    _model, whole, _cpus, _memory, partial, memory_of_gpu = state
    total = whole * WHOLE + sum(partial)
    if not total:
        return 0.0
    need = _needs(demand, memory_of_gpu)
    held = _holding(demand, state, need)
    if not partial:
        return _stranded_whole(demand, held, whole)
    return _stranded_with_parts(demand, held, need, partial, total)


def _stranded_whole(demand: Demand, held: Any, whole: int) -> float:
    """Fragmentation of a node whose free GPUs are all whole: all of them, for each
    shape it cannot hold."""
    import numpy as np

    return float(demand.columns()[5] @ np.where(held, 0.0, float(whole * WHOLE))) / WHOLE


def _needs(demand: Demand, memory_of_gpu: int) -> Any:
    """What each shape of the mix needs of one GPU with that memory, in thousandths (0:
    whole GPUs)."""
    import numpy as np

    _gpus, milli, gpu_memory = demand.columns()[:3]
    if not demand.by_memory:
        return milli
    if memory_of_gpu:
        return np.where(gpu_memory > 0, np.ceil(gpu_memory * WHOLE / memory_of_gpu), milli)
    return np.where(gpu_memory > 0, WHOLE + 1, milli)


def _holding(demand: Demand, state: State, need: Any) -> Any:
    """Which shapes of the mix a node in `state` can hold."""
    import numpy as np

    model, whole, cpus, memory, partial, _memory_of_gpu = state
    gpus, _milli, _gpu_memory, wants_cpus, wants_memory, _shares, accepts, any_model = (
        demand.columns()
    )
    room = WHOLE if whole else max(partial, default=0)
    held = (wants_cpus <= cpus) & (wants_memory <= memory) & accepts.get(model, any_model)
    return held & np.where(need > 0, need <= room, gpus <= whole)


def _stranded_with_parts(
    demand: Demand, held: Any, need: Any, partial: tuple[int, ...], total: int
) -> float:
    """Fragmentation of a node with partly held GPUs: for a shape it can hold, the free
    parts too small for it are lost to a share, all of them to whole GPUs; for one it
    cannot, everything free is."""
    import numpy as np

    parts = np.asarray(partial, dtype=float)
    sums = np.concatenate(([0.0], np.cumsum(parts)))
    lost = np.where(held, np.where(need > 0, sums[np.searchsorted(parts, need)], sums[-1]), total)
    return float(demand.columns()[5] @ lost) / WHOLE


class Fragmentation:
    """Fragmentation of node states under a demand's mix, remembered until the mix is
    taken again: per state (nodes repeat each other's states), and per state as the mix
    tells states apart. A node's CPUs matter to the mix only as how many of its
    shapes' CPU asks they meet, and so its memory: states that differ within those
    steps strand alike, and one measure serves them all."""

    def __init__(self, demand: Demand):
        self.demand = demand
        self._version = -1
        self._known: dict[State, float] = {}
        self._alike: dict[State, float] = {}
        self._cpu_steps: list[float] = []  # the CPUs and memory the mix's shapes ask
        self._memory_steps: list[int] = []
        self._needs: dict[int, Any] = {}  # by each GPU's memory
        # by GPU model, whole GPUs free, CPU and memory steps, each GPU's memory and the
        # most one GPU has free: the shapes held, and the fragmentation when no GPU is
        # partly held (None until measured)
        self._held: dict[tuple[Any, ...], list[Any]] = {}

    def current(self) -> Fragmentation:
        """Take the mix again if it is due; what was remembered goes with the old one."""
        mix = self.demand.mix()
        if self._version != self.demand.version:
            self._version, self._known, self._alike = self.demand.version, {}, {}
            self._needs, self._held = {}, {}
            self._cpu_steps = sorted({kind[1] for kind, _share in mix})
            self._memory_steps = sorted({kind[2] for kind, _share in mix})
        return self

    def __call__(self, state: State) -> float:
        """Fragmentation of a node in `state`, under the mix as it was last taken."""
        known = self._known.get(state)
        if known is None:
            model, whole, cpus, memory, partial, memory_of_gpu = state
            alike = (
                model,
                whole,
                bisect.bisect_right(self._cpu_steps, cpus),
                bisect.bisect_right(self._memory_steps, memory),
                partial,
                memory_of_gpu,
            )
            known = self._alike.get(alike)
            if known is None:
                # The steps are those of the mix `stranded` measures under.
                assert self._version == self.demand.version, "current() first"
                known = self._alike[alike] = self._stranded(state, alike)
            self._known[state] = known
        return known

    def _stranded(self, state: State, alike: State) -> float:
        """`stranded`, from what states alike in all but their parts share."""
        _model, whole, _cpus, _memory, partial, memory_of_gpu = state
        total = whole * WHOLE + sum(partial)
        if not total:
            return 0.0
        room = WHOLE if whole else max(partial)
        held_key = (*alike[:4], memory_of_gpu, room)
        known = self._held.get(held_key)
        if known is None:
            need = self._needs.get(memory_of_gpu)
            if need is None:
                need = self._needs[memory_of_gpu] = _needs(self.demand, memory_of_gpu)
            known = self._held[held_key] = [_holding(self.demand, state, need), None]
        held, alone = known
        if not partial:
            if alone is None:
                alone = known[1] = _stranded_whole(self.demand, held, whole)
            return alone
        return _stranded_with_parts(self.demand, held, self._needs[memory_of_gpu], partial, total)


def _holds(node_kind: NodeClass, wanted: Shape) -> bool:
    model, gpus, cpus, memory, memory_of_gpu = node_kind
    wants_gpus, wants_cpus, wants_memory, models, milli, gpu_memory = wanted
    sharing = bool(milli or gpu_memory)
    return (
        wants_gpus <= gpus
        and (not sharing or (gpus > 0 and share_need(milli, gpu_memory, memory_of_gpu) <= WHOLE))
        and wants_cpus <= cpus
        and wants_memory <= memory
        and (not models or model in models)
    )


def _amount(wanted: Shape, node_kind: NodeClass) -> float:
    """GPUs a shape takes on a class's node, shares as fractions."""
    gpus, _cpus, _memory, _models, milli, gpu_memory = wanted
    if gpus or not (milli or gpu_memory):
        return float(gpus)
    return min(share_need(milli, gpu_memory, node_kind[4]), WHOLE) / WHOLE


@dataclass
class ClassPlan:
    """Each group's share of GPUs per node class, and what it has placed where since.
    A group is the shapes that could go to the same classes.

    How a request follows the plan depends on what bounds the mix. Where some shapes
    are bound to GPU models (`by_rate`), its group's classes are taken in the order of
    how far each is behind its planned share: the models partition the cluster, and the
    split must be kept to the rate. Where only GPUs, CPUs and memory per node bound
    the shapes (an 8-GPU task with 120 CPUs fits only the 128-CPU nodes), the plan only
    keeps a group off the classes it was not planned on that groups with fewer choices
    were; within the rest, fragmentation chooses, as without a plan. On multigpu20
    (20,000 tasks drawn, allocation at the first failed GPU request), followed to the
    rate the split spreads the requests that fit anywhere as fragmentation would not
    (seed 42, shares: 0.9169 against 0.9522 with this); without a plan, the 128-CPU
    nodes went to whatever came first (seed 3, shares: 0.8034 against best fit's
    0.9475; with this, 0.9509)."""

    targets: dict[frozenset[NodeClass], dict[NodeClass, float]] = field(default_factory=dict)
    # GPUs placed per class since the plan was made (shares as fractions)
    placed: dict[frozenset[NodeClass], dict[NodeClass, float]] = field(default_factory=dict)
    classes: tuple[NodeClass, ...] = ()
    by_rate: bool = False
    _groups: dict[Shape, frozenset[NodeClass]] = field(default_factory=dict)
    _kept: dict[frozenset[NodeClass], dict[NodeClass, int]] = field(default_factory=dict)

    @classmethod
    def solve(
        cls, mix: tuple[tuple[Shape, float], ...], free: dict[NodeClass, tuple[float, float, int]]
    ) -> ClassPlan:
        """Split the mix over the classes, by the free GPUs, CPUs and memory of each
        class's nodes that have a GPU free. Shapes that could go to the same classes
        form a group, which shares one split (so that a shape the mix has not seen yet
        follows its group's): the split that lets the largest t times each group's
        demand be held. Where every class could hold every shape there is nothing to
        plan: fragmentation alone decides."""
        try:
            import numpy as np
            from scipy.optimize import linprog
            from scipy.sparse import coo_array, vstack
        except ImportError:  # without SciPy, fragmentation alone decides
            return cls()
        classes = [c for c, room in free.items() if room[0] > 0]
        demand: dict[frozenset[int], list[float]] = {}  # group -> GPUs, CPUs, memory
        for wanted, share in mix:
            group = frozenset(c for c, kind in enumerate(classes) if _holds(kind, wanted))
            if group:
                total = demand.setdefault(group, [0.0, 0.0, 0.0])
                total[0] += share * _amount(wanted, classes[min(group)])
                total[1] += share * wanted[1]
                total[2] += share * wanted[2]
        groups = list(demand)
        if all(len(group) == len(classes) for group in groups):
            return cls()
        pairs = [(g, c) for g, group in enumerate(groups) for c in sorted(group)]
        if not pairs:
            return cls()
        t = len(pairs)  # the last column
        rows, cols, values = [], [], []
        for column, (g, c) in enumerate(pairs):
            for resource in range(3):
                rows.append(3 * c + resource)
                cols.append(column)
                values.append(demand[groups[g]][resource])
        per_class = coo_array((values, (rows, cols)), shape=(3 * len(classes), t + 1))
        rows = [g for g, _c in pairs] + list(range(len(groups)))
        cols = list(range(t)) + [t] * len(groups)
        values = [1.0] * t + [-1.0] * len(groups)
        per_group = coo_array((values, (rows, cols)), shape=(len(groups), t + 1))
        room = np.array([float(value) for c in classes for value in free[c]])
        most = np.zeros(t + 1)
        most[-1] = -1.0
        solved = linprog(
            most,
            A_ub=per_class.tocsr(),
            b_ub=room,
            A_eq=per_group.tocsr(),
            b_eq=np.zeros(len(groups)),
            bounds=(0, None),
            method="highs",
        )
        if solved.status != 0 or solved.x[-1] <= 0:
            return cls()
        # Of the splits that hold as much (to a thousandth), the one that leaves the
        # classes few groups can use to those groups. HiGHS returns any vertex of the
        # first problem's optima, and one that sent unconstrained requests to the G3
        # nodes starved the G3-only ones there (0.9767 at the first failure on
        # gpuspec20 in whole GPUs; 0.9895 with this). Each GPU a group of several
        # classes takes from a class costs that class's pressure: the demand of every
        # group that could go there, each spread over its classes, per free GPU.
        pressure = np.zeros(len(classes))
        for group, needs in demand.items():
            for c in group:
                pressure[c] += needs[0] / len(group)
        capacity = np.array([max(free[c][0], 1e-9) for c in classes])
        pressure = pressure / capacity
        cost = np.zeros(t + 1)
        for column, (g, c) in enumerate(pairs):
            cost[column] = demand[groups[g]][0] * pressure[c] * (len(groups[g]) > 1)
        floor = coo_array(([-1.0], ([0], [t])), shape=(1, t + 1))
        second = linprog(
            cost,
            A_ub=vstack([per_class, floor]).tocsr(),
            b_ub=np.concatenate([room, [-0.999 * solved.x[-1]]]),
            A_eq=per_group.tocsr(),
            b_eq=np.zeros(len(groups)),
            bounds=(0, None),
            method="highs",
        )
        if second.status == 0 and second.x[-1] > 0:
            solved = second
        targets: dict[frozenset[NodeClass], dict[NodeClass, float]] = {}
        for column, (g, c) in enumerate(pairs):
            if solved.x[column] > 1e-9:
                split = targets.setdefault(frozenset(classes[i] for i in groups[g]), {})
                split[classes[c]] = float(solved.x[column] / solved.x[-1])
        by_rate = any(wanted[3] for wanted, _share in mix)
        return cls(targets, classes=tuple(classes), by_rate=by_rate)

    def group(self, request: Request) -> frozenset[NodeClass]:
        kind = shape(request)
        found = self._groups.get(kind)
        if found is None:
            found = self._groups[kind] = frozenset(c for c in self.classes if _holds(c, kind))
        return found

    def order(self, request: Request) -> dict[NodeClass, int]:
        """The classes the request's group is to try first, by place (classes at the
        same place are tried together; those left out come after all): by rate, the
        classes the plan gives the group, furthest behind its share first; otherwise
        every class of the group but those kept for groups with fewer choices."""
        group = self.group(request)
        split = self.targets.get(group)
        if not split:
            return {}
        if not self.by_rate:
            kept = self._kept.get(group)
            if kept is None:
                kept = self._kept[group] = self._kept_for(group, split)
            return kept
        done = self.placed.get(group, {})
        count = sum(done.values()) + _amount(shape(request), min(split))
        ranked = sorted(split, key=lambda kind: done.get(kind, 0.0) / count - split[kind])
        return {kind: rank for rank, kind in enumerate(ranked)}

    def _kept_for(
        self, group: frozenset[NodeClass], split: dict[NodeClass, float]
    ) -> dict[NodeClass, int]:
        """The group's classes less those the plan gives it no share of and gives a
        narrower group some."""
        wanted_by_fewer = {
            kind
            for other, other_split in self.targets.items()
            if other < group
            for kind, part in other_split.items()
            if part > 0
        }
        return {kind: 0 for kind in group if kind in split or kind not in wanted_by_fewer}

    def record(self, request: Request, kind: NodeClass) -> None:
        done = self.placed.setdefault(self.group(request), {})
        done[kind] = done.get(kind, 0.0) + _amount(shape(request), kind)


# A node's class, free GPUs, CPUs and memory, the free thousandths of its partly held
# GPUs, whether it is drained, whether it isolates sessions, and its operators.
StateKey = tuple[NodeClass, int, float, int, tuple[int, ...], bool, bool, frozenset[str]]


def state_key(node: NodeView) -> StateKey:
    """Nodes alike in everything a placement looks at, so that one stands for all."""
    return (
        node_class(node),
        len(node.free_gpus),
        node.free_cpus,
        node.free_memory_mb,
        tuple(sorted(free for _index, free in node.partial)),
        node.drained,
        node.isolating,
        node.operators,
    )
