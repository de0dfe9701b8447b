"""Placement policy: pure functions over plain data, shared by the live loop, the
simulator and the tests.

A node can take a request when it is not drained, admits its owner's code (a node
that does not isolate sessions runs only trusted users' code, and only its operators'
where it names them: `portal/trust.py`), and has the GPUs (of an allowed model), CPUs
and memory free. Of those, the default policy, `fgd`, prefers locality first (the
request's dataset versions cached there, its image present: weights configurable), then
the node class its kind of request is planned to go to, then the node where it strands
the fewest GPUs for the recent demand (`fragmentation.py`), then best fit. `best-fit`
(locality, then the fewest GPUs left free afterwards, so that whole multi-GPU nodes stay
free for the sessions that need them: NSML, section 3.2.1), first fit, worst fit
(spreading, as Kubernetes does by default) and random remain as baselines.

`Cluster` indexes nodes by their number of free GPUs, so that a best-fit or worst-fit
decision on a 1,213-node cluster looks at a handful of nodes, not all of them, and the
nodes with a GPU free by state, so that `fgd` scores one node of each state; both are
updated in place as placements are made and released.

A request asks for whole GPUs, or for a share of one GPU: thousandths of it
(`gpu_milli`, `podium run -g 0.25`) or as much of it as a given memory is of its memory
(`gpu_memory_mb`, `--gpu-memory 10G`, resolved on each node against its GPUs' memory).
A node knows which GPUs are wholly free and how much of each partly held GPU is left;
a share goes to the partly held GPU it fills best, else to a free one, so whole GPUs
stay whole for the requests that need them.
"""

from __future__ import annotations

import random as random_module
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from portal import trust
from scheduler.fragmentation import (
    REPLAN_EVERY,
    WHOLE,
    ClassPlan,
    Demand,
    Fragmentation,
    NodeClass,
    StateKey,
    node_class,
    share_need,
    state_key,
)
from scheduler.ranking import Score, Scorer, States

POLICIES = ("fgd", "best-fit", "first-fit", "worst-fit", "random")
DEFAULT_POLICY = "fgd"
# How each policy chooses among nodes it scores alike (the simulator reports it).
TIE_BREAKS = {
    "fgd": "most locality; then the node class furthest behind its planned share (where"
    " shapes are bound to GPU models; otherwise, any class but those planned for kinds"
    " with fewer choices, first); then the least fragmentation added (a share of a"
    " GPU: a GPU already shared first, else the node with fewest whole GPUs free); then"
    " fewest GPUs left free (without GPUs: the node with the least GPU capacity free,"
    " first); then, of nodes in the same state, the one longest in it, and of states,"
    " the one whose node comes first by name",
    "best-fit": "most locality, then fewest GPUs left free; then, with locality, the first"
    " node by name, and without, the node longest at its number of free GPUs",
    "first-fit": "the first node by name",
    "worst-fit": "most GPUs left free; then the node longest at its number of free GPUs",
    "random": "a uniform choice among the nodes that fit (seeded: --seed)",
}


@dataclass(frozen=True)
class Request:
    gpus: int = 0
    cpus: float = 1.0
    memory_mb: int = 0
    gpu_models: frozenset[str] = frozenset()  # the models it may run on; empty: any
    datasets: frozenset[str] = frozenset()  # dataset versions it mounts, e.g. "mnist:3"
    image: str = ""
    user: str = ""  # its owner's username
    trusted: bool = True  # may its owner's code run outside a container?
    gpu_milli: int = 0  # a share of one GPU in thousandths (1-999), instead of whole GPUs
    gpu_memory_mb: int = 0  # or a share of one GPU as this much of its memory

    @property
    def shares(self) -> bool:
        """Asks for a share of one GPU rather than whole GPUs."""
        return bool(self.gpu_milli or self.gpu_memory_mb)

    @property
    def wants_gpu(self) -> bool:
        return bool(self.gpus) or self.shares


@dataclass(frozen=True)
class NodeView:
    name: str
    total_gpus: int
    free_gpus: tuple[int, ...]  # indices of the GPUs nobody holds
    total_cpus: float
    free_cpus: float
    total_memory_mb: int
    free_memory_mb: int
    gpu_model: str = ""
    drained: bool = False
    datasets: frozenset[str] = frozenset()  # dataset versions in the node's cache
    images: frozenset[str] = frozenset()
    isolating: bool = True  # runs sessions in containers
    operators: frozenset[str] = frozenset()  # runs only these users' sessions; empty: any
    # GPUs partly held by shares: (index, thousandths still free), by index.
    partial: tuple[tuple[int, int], ...] = ()
    gpu_memory_mb: int = 0  # each GPU's memory; 0: not known (no share by memory fits)


@dataclass(frozen=True)
class Placement:
    node: str
    gpu_indices: tuple[int, ...]
    gpu_milli: int = 0  # a share of gpu_indices[0], in thousandths; 0: whole GPUs


def share_of(request: Request, gpu_memory_mb: int) -> int:
    """The thousandths of one GPU with `gpu_memory_mb` of memory that a share request
    needs; over WHOLE when such a GPU cannot hold it."""
    return share_need(request.gpu_milli, request.gpu_memory_mb, gpu_memory_mb)


def gpu_amount(request: Request, gpu_memory_mb: int = 0) -> float:
    """The GPUs a request takes, shares as fractions (on GPUs with that memory)."""
    if request.gpus or not request.shares:
        return float(request.gpus)
    return min(share_of(request, gpu_memory_mb), WHOLE) / WHOLE


def free_share(node: NodeView) -> int:
    """All the GPU capacity free on a node, in thousandths."""
    return len(node.free_gpus) * WHOLE + sum(free for _index, free in node.partial)


def share_gpu(node: NodeView, need: int) -> int | None:
    """The GPU a share of `need` goes to: the partly held one it fills best, else the
    first free one; None when none has room."""
    fitting = [(free, index) for index, free in node.partial if free >= need]
    if fitting:
        return min(fitting)[1]
    return min(node.free_gpus) if node.free_gpus and need <= WHOLE else None


def gpu_room(node: NodeView, request: Request) -> bool:
    if request.gpus:
        return len(node.free_gpus) >= request.gpus
    if request.shares:
        return share_gpu(node, share_of(request, node.gpu_memory_mb)) is not None
    return True


def _share_changed(
    node: NodeView, index: int, change: int
) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """The node's free GPUs and partly held ones once `change` thousandths of GPU
    `index` are freed (or taken: < 0)."""
    held = dict(node.partial)
    current = WHOLE if index in node.free_gpus else held.pop(index, 0)
    left = current + change
    if not 0 <= left <= WHOLE:
        raise ValueError(f"GPU {index} of {node.name} has {current} thousandths free")
    others = set(node.free_gpus) - {index}
    free_gpus = tuple(sorted({*others, index} if left == WHOLE else others))
    if 0 < left < WHOLE:
        held[index] = left
    return free_gpus, tuple(sorted(held.items()))


@dataclass(frozen=True)
class Weights:
    """How much each kind of locality counts; 0 turns it off."""

    dataset: float = 2.0  # per cached dataset version the request mounts
    image: float = 1.0


DEFAULT_WEIGHTS = Weights()


def model_allowed(node: NodeView, request: Request) -> bool:
    return not request.wants_gpu or not request.gpu_models or node.gpu_model in request.gpu_models


def admits(node: NodeView, request: Request) -> bool:
    return trust.may_run_on(
        isolating=node.isolating,
        operators=node.operators,
        username=request.user,
        trusted=request.trusted,
    )


def fits_now(node: NodeView, request: Request) -> bool:
    return (
        not node.drained
        and gpu_room(node, request)
        and node.free_cpus >= request.cpus
        and node.free_memory_mb >= request.memory_mb
        and model_allowed(node, request)
        and admits(node, request)
    )


def fits_ever(node: NodeView, request: Request) -> bool:
    """Could the node hold the request if nothing else ran on it?"""
    return (
        node.total_gpus >= request.gpus
        and (
            not request.shares
            or (node.total_gpus > 0 and share_of(request, node.gpu_memory_mb) <= WHOLE)
        )
        and node.total_cpus >= request.cpus
        and node.total_memory_mb >= request.memory_mb
        and model_allowed(node, request)
        and admits(node, request)
    )


def locality(node: NodeView, request: Request, weights: Weights) -> float:
    score = weights.dataset * len(request.datasets & node.datasets)
    if request.image and request.image in node.images:
        score += weights.image
    return score


@dataclass
class Cluster:
    """Nodes' free resources, indexed for placement; mutated only by allocate/release."""

    nodes: dict[str, NodeView] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # by name: first fit's order
    by_free: dict[int, dict[str, None]] = field(default_factory=dict)  # free GPUs -> names
    # Which nodes hold an image or a dataset version: locality looks at these, not at
    # every node.
    holders: dict[str, set[str]] = field(default_factory=dict)
    # Nodes with a GPU free, grouped by state (`fragmentation.state_key`): the `fgd`
    # policy scores one node of each group.
    states: States = field(default_factory=States)
    demand: Demand = field(default_factory=Demand)
    _fragmentation: Fragmentation | None = None
    _plan: ClassPlan | None = None
    _placed_since_plan: int = 0
    _plan_version: int = 0  # the demand's version when the plan was made
    _rank: dict[str, int] | None = None  # a node's place in `order`, made when first needed

    @classmethod
    def of(cls, nodes: Iterable[NodeView], demand: Demand | None = None) -> Cluster:
        cluster = cls(demand=demand or Demand())
        for node in sorted(nodes, key=lambda n: n.name):
            cluster.nodes[node.name] = node
            cluster.order.append(node.name)
            cluster.by_free.setdefault(len(node.free_gpus), {})[node.name] = None
            if node.free_gpus or node.partial:
                cluster.states.add(node.name, state_key(node))
            if node.images or node.datasets:
                for held in node.images | node.datasets:
                    cluster.holders.setdefault(held, set()).add(node.name)
        return cluster

    @property
    def rank(self) -> dict[str, int]:
        if self._rank is None:
            self._rank = {name: index for index, name in enumerate(self.order)}
        return self._rank

    def __len__(self) -> int:
        return len(self.nodes)

    def observe(self, request: Request) -> None:
        """A request arrived: it joins the demand the `fgd` policy plans for."""
        self.demand.observe(request)

    # Decisions ----------------------------------------------------------------------

    def place(
        self,
        request: Request,
        policy: str = DEFAULT_POLICY,
        *,
        weights: Weights = DEFAULT_WEIGHTS,
        rng: random_module.Random | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> Placement | None:
        """Where `request` goes now, or None; the cluster is not changed."""
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")
        wants_locality = policy in ("best-fit", "fgd") and (
            (request.datasets and weights.dataset) or (request.image and weights.image)
        )
        if policy == "fgd":
            chosen = self._least_fragmenting(request, weights if wants_locality else None, exclude)
        elif wants_locality:
            chosen = self._best_with_locality(request, weights, exclude)
        elif policy == "random":
            fitting = [n for n in self._in_order(exclude) if fits_now(n, request)]
            chosen = (rng or random_module).choice(fitting) if fitting else None
        elif policy == "first-fit":
            chosen = next((n for n in self._in_order(exclude) if fits_now(n, request)), None)
        else:
            ascending = policy == "best-fit"
            chosen = next(
                (
                    n
                    for n in self._by_free_gpus(request.gpus, ascending, exclude)
                    if fits_now(n, request)
                ),
                None,
            )
        if chosen is None:
            return None
        if request.shares:
            need = share_of(request, chosen.gpu_memory_mb)
            index = share_gpu(chosen, need)
            assert index is not None
            return Placement(chosen.name, (index,), need)
        return Placement(chosen.name, tuple(sorted(chosen.free_gpus)[: request.gpus]))

    def _in_order(self, exclude: frozenset[str]) -> Iterator[NodeView]:
        return (self.nodes[name] for name in self.order if name not in exclude)

    def _by_free_gpus(
        self, at_least: int, ascending: bool, exclude: frozenset[str]
    ) -> Iterator[NodeView]:
        counts = sorted((c for c in self.by_free if c >= at_least), reverse=not ascending)
        for count in counts:
            for name in self.by_free[count]:
                if name not in exclude:
                    yield self.nodes[name]

    def _best_with_locality(
        self, request: Request, weights: Weights, exclude: frozenset[str]
    ) -> NodeView | None:
        """The node with the most locality, then the fewest GPUs left free (then the
        first by name). Only the nodes that hold the request's image or datasets can
        score above nothing, so they alone are scored; when none of them fits, plain
        best fit decides, through the free-GPU index."""
        wanted = list(request.datasets) if weights.dataset else []
        if request.image and weights.image:
            wanted.append(request.image)
        candidates = {name for held in wanted for name in self.holders.get(held, ())}
        fitting = [
            node
            for name in candidates - exclude
            if fits_now(node := self.nodes[name], request) and locality(node, request, weights) > 0
        ]
        if fitting:
            return min(
                fitting,
                key=lambda n: (
                    -locality(n, request, weights),
                    len(n.free_gpus) - request.gpus,
                    self.rank[n.name],
                ),
            )
        return next(
            (n for n in self._by_free_gpus(request.gpus, True, exclude) if fits_now(n, request)),
            None,
        )

    def _least_fragmenting(
        self, request: Request, weights: Weights | None, exclude: frozenset[str]
    ) -> NodeView | None:
        """`fgd`: locality first where the request wants it; then the node class the
        plan gives the request's shape and it is furthest behind on; then the node
        where it adds the least fragmentation; then best fit (`ranking.Scorer`). A
        request without GPUs goes to a node with none free where one fits. Nodes in the
        same state score alike, so one of each state is scored, and the states are
        ranked per kind of request as they change (`ranking.States`)."""
        scorer = Scorer(request, self._fragmentation_measure())
        usable = self._admission(request)
        if weights is not None:
            local = self._most_local(request, weights, exclude, scorer, usable)
            if local is not None:
                return local
        if not request.wants_gpu:
            # Taking CPUs and memory strands no GPU on a node with none free. (Most of
            # those nodes are full: the cheap tests first.)
            cpus, memory = request.cpus, request.memory_mb
            for name in self.by_free.get(0, {}):
                node = self.nodes[name]
                if (
                    node.free_cpus >= cpus
                    and node.free_memory_mb >= memory
                    and not node.partial
                    and name not in exclude
                    and fits_now(node, request)
                ):
                    return node
        order = self._class_plan().order(request) if request.wants_gpu else {}
        chosen = self.states.best(scorer, order, self.rank, usable, exclude)
        return None if chosen is None else self.nodes[chosen]

    def _most_local(
        self,
        request: Request,
        weights: Weights,
        exclude: frozenset[str],
        scorer: Scorer,
        usable: Callable[[StateKey], bool],
    ) -> NodeView | None:
        """Of the nodes with the most locality where some fits, the one where the
        request adds the least fragmentation, then leaves the fewest GPUs free. Each
        node's locality comes from the index of what nodes hold (as `locality` scores
        it)."""
        near: dict[str, float] = {}
        if weights.dataset:
            for ref in request.datasets:
                for name in self.holders.get(ref, ()):
                    near[name] = near.get(name, 0.0) + weights.dataset
        if request.image and weights.image:
            for name in self.holders.get(request.image, ()):
                near[name] = near.get(name, 0.0) + weights.image
        at_level: dict[float, list[str]] = {}
        for name, level in near.items():
            if level > 0 and name not in exclude:
                at_level.setdefault(level, []).append(name)
        wants_gpu, key_of, rank = request.wants_gpu, self.states.key_of, self.rank
        # Nodes in the same state score alike: each state is scored once a decision.
        scores: dict[StateKey, Score | None] = {}
        for level in sorted(at_level, reverse=True):
            best: tuple[float, int, int] | None = None
            for name in at_level[level]:
                key = key_of.get(name)
                if key is None:
                    # No GPU capacity free: fragmentation is nothing before and after.
                    if wants_gpu or not fits_now(self.nodes[name], request):
                        continue
                    ranked = (0.0, 0, rank[name])
                else:
                    if key in scores:
                        score = scores[key]
                    else:
                        score = scores[key] = scorer(key) if usable(key) else None
                    if score is None:
                        continue
                    ranked = (score[1], key[1], rank[name])
                if best is None or ranked < best:
                    best = ranked
            if best is not None:
                return self.nodes[self.order[best[2]]]
        return None

    def _admission(self, request: Request) -> Callable[[StateKey], bool]:
        """Whether the nodes in a state admit the request's owner (remembered by the
        kind of node, for this request)."""
        admitted: dict[tuple[bool, frozenset[str]], bool] = {}

        def usable(key: StateKey) -> bool:
            kind = (key[6], key[7])
            verdict = admitted.get(kind)
            if verdict is None:
                verdict = admitted[kind] = trust.may_run_on(
                    isolating=key[6],
                    operators=key[7],
                    username=request.user,
                    trusted=request.trusted,
                )
            return verdict

        return usable

    def _least_fragmenting_by_scan(
        self, request: Request, weights: Weights | None, exclude: frozenset[str]
    ) -> NodeView | None:
        """The same decision by scoring every state (and, with locality, every node)
        afresh: the reference the walk is checked against (tests only)."""
        scorer = Scorer(request, self._fragmentation_measure())
        usable = self._admission(request)
        if weights is not None:
            fitting = [n for n in self._in_order(exclude) if fits_now(n, request)]
            most = max((locality(n, request, weights) for n in fitting), default=0.0)
            if most > 0:
                return min(
                    (n for n in fitting if locality(n, request, weights) == most),
                    key=lambda n: (
                        scorer(state_key(n))[1]  # type: ignore[index]
                        if n.free_gpus or n.partial
                        else 0.0,
                        len(n.free_gpus),
                        self.rank[n.name],
                    ),
                )
        if not request.wants_gpu:
            for name in self.by_free.get(0, {}):
                node = self.nodes[name]
                if name not in exclude and not node.partial and fits_now(node, request):
                    return node
        order = self._class_plan().order(request) if request.wants_gpu else {}
        best: tuple[int, float, float, float, int, str] | None = None
        for key, names in self.states.groups.items():
            score = scorer(key)
            first = next((n for n in names if n not in exclude), None)
            if score is None or first is None or not usable(key):
                continue
            ranked = (order.get(key[0], len(order)), *score, self.rank[first], first)
            if best is None or ranked < best:
                best = ranked
        return None if best is None else self.nodes[best[-1]]

    def _fragmentation_measure(self) -> Fragmentation:
        if self._fragmentation is None or self._fragmentation.demand is not self.demand:
            self._fragmentation = Fragmentation(self.demand)
        return self._fragmentation.current()

    def _class_plan(self) -> ClassPlan:
        """The class plan, solved again every REPLAN_EVERY placements: the free
        resources move, and so does the mix."""
        mix = self.demand.mix()
        stale = self._plan_version != self.demand.version
        if self._plan is None or stale or self._placed_since_plan >= REPLAN_EVERY:
            free: dict[NodeClass, tuple[float, float, int]] = {}
            for key, names in self.states.groups.items():
                kind, gpus, cpus, memory, partial, drained, _iso, _ops = key
                if drained:
                    continue
                had = free.get(kind, (0.0, 0.0, 0))
                count = len(names)
                free[kind] = (
                    had[0] + (gpus + sum(partial) / WHOLE) * count,
                    had[1] + cpus * count,
                    had[2] + memory * count,
                )
            self._plan = ClassPlan.solve(mix, free)
            self._placed_since_plan, self._plan_version = 0, self.demand.version
        return self._plan

    def _best_with_locality_by_scan(
        self, request: Request, weights: Weights, exclude: frozenset[str]
    ) -> NodeView | None:
        """The same decision by scoring every node: the reference the fast path is
        checked against (tests, and the benchmark's side-by-side run)."""
        fitting = [n for n in self._in_order(exclude) if fits_now(n, request)]
        if not fitting:
            return None
        return min(
            fitting,
            key=lambda n: (-locality(n, request, weights), len(n.free_gpus) - request.gpus),
        )

    # Changes ------------------------------------------------------------------------

    def _replace(self, node: NodeView, updated: NodeView) -> None:
        del self.by_free[len(node.free_gpus)][node.name]
        self.by_free.setdefault(len(updated.free_gpus), {})[node.name] = None
        if node.free_gpus or node.partial:
            self.states.remove(node.name)
        if updated.free_gpus or updated.partial:
            self.states.add(node.name, state_key(updated))
        self.nodes[node.name] = updated

    def allocate(self, request: Request, placement: Placement) -> None:
        node = self.nodes[placement.node]
        taken = set(placement.gpu_indices)
        if not fits_now(node, request) or (
            not placement.gpu_milli and not taken <= set(node.free_gpus)
        ):
            raise ValueError(f"{placement} does not fit on {node.name}")
        if request.wants_gpu:
            self._placed_since_plan += 1
            if self._plan is not None:
                self._plan.record(request, node_class(node))
        if placement.gpu_milli:
            free_gpus, partial = _share_changed(
                node, placement.gpu_indices[0], -placement.gpu_milli
            )
        else:
            free_gpus = tuple(i for i in node.free_gpus if i not in taken)
            partial = node.partial
        self._replace(
            node,
            replace(
                node,
                free_gpus=free_gpus,
                partial=partial,
                free_cpus=node.free_cpus - request.cpus,
                free_memory_mb=node.free_memory_mb - request.memory_mb,
            ),
        )

    def release(self, request: Request, placement: Placement) -> None:
        node = self.nodes[placement.node]
        if placement.gpu_milli:
            index, change = placement.gpu_indices[0], placement.gpu_milli
            free_gpus, partial = _share_changed(node, index, change)
        else:
            free_gpus = tuple(sorted((*node.free_gpus, *placement.gpu_indices)))
            partial = node.partial
        self._replace(
            node,
            replace(
                node,
                free_gpus=free_gpus,
                partial=partial,
                free_cpus=node.free_cpus + request.cpus,
                free_memory_mb=node.free_memory_mb + request.memory_mb,
            ),
        )


def place(
    request: Request,
    nodes: Iterable[NodeView],
    policy: str = DEFAULT_POLICY,
    *,
    weights: Weights = DEFAULT_WEIGHTS,
    rng: random_module.Random | None = None,
) -> Placement | None:
    return Cluster.of(nodes).place(request, policy, weights=weights, rng=rng)


def best_fit(request: Request, nodes: Iterable[NodeView]) -> Placement | None:
    return place(request, nodes, "best-fit")


def never_fits_reason(request: Request, nodes: Sequence[NodeView]) -> str | None:
    """Why no node could ever hold `request`, or None when one could."""
    if not nodes or any(fits_ever(node, request) for node in nodes):
        return None
    admitting = [n for n in nodes if admits(n, request)]
    if not admitting:
        return trust.refusal(any(n.isolating for n in nodes), request.trusted)
    allowed = [n for n in admitting if model_allowed(n, request)]
    if not allowed:
        return f"asks for GPU models {', '.join(sorted(request.gpu_models))}, which no node has"
    if request.shares:
        with_gpus = [n for n in allowed if n.total_gpus]
        if not with_gpus:
            return "asks for a share of a GPU but no node has one"
        if request.gpu_memory_mb and all(
            share_of(request, n.gpu_memory_mb) > WHOLE for n in with_gpus
        ):
            largest = max(n.gpu_memory_mb for n in with_gpus)
            if not largest:
                return "asks for some of one GPU's memory but no node says how much its GPUs have"
            return (
                f"asks for {request.gpu_memory_mb} MiB of one GPU's memory but the "
                f"largest GPU has {largest} MiB"
            )
    most_gpus = max(node.total_gpus for node in allowed)
    most_cpus = max(node.total_cpus for node in allowed)
    most_memory = max(node.total_memory_mb for node in allowed)
    if request.gpus > most_gpus:
        return (
            f"asks for {request.gpus} GPU{'s' * (request.gpus != 1)} "
            f"but the largest node has {most_gpus}"
        )
    if request.memory_mb > most_memory:
        return (
            f"asks for {request.memory_mb} MiB of memory but the largest node has {most_memory} MiB"
        )
    if request.cpus > most_cpus:
        return f"asks for {request.cpus:g} CPUs but the largest node has {most_cpus:g}"
    return "no single node has the GPUs, CPUs and memory it asks for together"
