"""The node states `fgd` chooses among, and how it scores them.

Nodes with GPU capacity free are grouped by state (`fragmentation.state_key`): nodes
alike in everything a placement looks at, of which one stands for all. On the openb
cluster about 350 states stand for the 1,213 nodes while it fills (600 near full), and a
decision of `fgd` is a walk over them in Python: what it costs is what is done per
state. So the states are grouped by node class too, and a request the class plan
orders walks the classes in the plan's order and stops at the first where some state
can take it; within a walk, each state is first tested on what costs nothing (its free
GPUs, CPUs, memory, model, the room of its GPUs for a share), and fragmentation, the
costly part, is measured only for the states that lead on what comes before it.

`Scorer` is the same rule state by state, for locality and for the reference decision
the walk is tested against.

Pure, as the policy: no database, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from itertools import chain
from typing import TYPE_CHECKING

from scheduler.fragmentation import (
    WHOLE,
    Fragmentation,
    NodeClass,
    StateKey,
    share_need,
    share_taken,
)

if TYPE_CHECKING:
    from scheduler.policy import Request

# How a state ranks within its class for a request: first the lead (for a share of a
# GPU, a GPU already shared before a whole one broken where fewest are whole; without
# GPUs, the least GPU capacity free), then the fragmentation the request adds there,
# then the GPUs it leaves free.
Score = tuple[float, float, float]


class Scorer:
    """How `fgd` scores a node state for one request; None where a node in that state
    cannot hold it (whom the node admits aside)."""

    def __init__(self, request: Request, fragmentation: Fragmentation):
        self.fragmentation = fragmentation
        self.gpus, self.models = request.gpus, request.gpu_models
        self.wants_gpu, self.shares = request.wants_gpu, request.shares
        self.cpus, self.memory = request.cpus, request.memory_mb
        self.milli, self.gpu_memory = request.gpu_milli, request.gpu_memory_mb
        self._need_on: dict[int, int] = {}  # the share it needs, by the GPUs' memory

    def need_on(self, memory_of_gpu: int) -> int:
        """The thousandths of a GPU with that memory the share needs."""
        need = self._need_on.get(memory_of_gpu)
        if need is None:
            need = self._need_on[memory_of_gpu] = share_need(
                self.milli, self.gpu_memory, memory_of_gpu
            )
        return need

    def may_hold(self, node_class: NodeClass) -> bool:
        """Whether a node of the class could hold the request when empty (its GPU
        model allowed): a node never has more free than it has."""
        model, gpus, cpus, memory, _memory_of_gpu = node_class
        return (
            gpus >= self.gpus
            and cpus >= self.cpus
            and memory >= self.memory
            and not (self.wants_gpu and self.models and model not in self.models)
        )

    def __call__(self, key: StateKey) -> Score | None:
        kind, free, cpus, memory, partial, drained, _isolating, _operators = key
        if (
            free < self.gpus
            or cpus < self.cpus
            or memory < self.memory
            or drained
            or (self.wants_gpu and self.models and kind[0] not in self.models)
        ):
            return None
        left_free, left_partial = free - self.gpus, partial
        if self.shares:
            taken = share_taken(free, partial, self.need_on(kind[4]))
            if taken is None:
                return None
            left_free, left_partial = taken
            # A GPU already shared first; a whole one broken where fewest are whole
            # (fragmentation alone would break the large nodes' GPUs, the only homes of
            # the largest requests).
            lead, after = float(left_free if left_free < free else -1), 0.0
        elif self.wants_gpu:
            lead, after = 0.0, float(left_free)
        else:
            # Without GPUs: where the least GPU capacity is free, so that CPUs and
            # memory stay beside the free GPUs for the requests that need them.
            lead, after = float(free * WHOLE + sum(partial)), 0.0
        measure = self.fragmentation
        added = measure(
            (kind[0], left_free, cpus - self.cpus, memory - self.memory, left_partial, kind[4])
        ) - measure((kind[0], free, cpus, memory, partial, kind[4]))
        return lead, added, after


class States:
    """The nodes with GPU capacity free, grouped by state and by node class. Changed
    only through `add` and `remove`."""

    def __init__(self) -> None:
        # state -> its nodes, the one longest in it first
        self.groups: dict[StateKey, dict[str, None]] = {}
        self.key_of: dict[str, StateKey] = {}
        self.by_class: dict[NodeClass, dict[StateKey, None]] = {}

    def add(self, name: str, key: StateKey) -> None:
        assert name not in self.key_of, f"{name} is in the states twice"
        names = self.groups.get(key)
        if names is None:
            names = self.groups[key] = {}
            self.by_class.setdefault(key[0], {})[key] = None
        names[name] = None
        self.key_of[name] = key

    def remove(self, name: str) -> None:
        key = self.key_of.pop(name)
        names = self.groups[key]
        del names[name]
        if not names:
            del self.groups[key]
            alike = self.by_class[key[0]]
            del alike[key]
            if not alike:
                del self.by_class[key[0]]

    def best(
        self,
        scorer: Scorer,
        order: dict[NodeClass, int],
        rank: dict[str, int],
        usable: Callable[[StateKey], bool],
        exclude: Collection[str],
    ) -> str | None:
        """The node `fgd` chooses: of the classes in the plan's order, place by place,
        the best state of the first place's classes that can take the request; else
        the best state of all the other classes. Of a state, the node longest in it (not held back);
        `usable`: whether a state's nodes admit the request's owner."""
        classes = [c for c in self.by_class if scorer.may_hold(c)]
        # The share it needs, by each GPU's memory, worked out once per decision.
        needs = {c[4]: scorer.need_on(c[4]) for c in classes} if scorer.shares else {}
        tiers: dict[int, list[NodeClass]] = {}
        for c in classes:
            if c in order:
                tiers.setdefault(order[c], []).append(c)
        for place in sorted(tiers):
            keys = chain.from_iterable(self.by_class[c] for c in tiers[place])
            chosen = self._walk(keys, scorer, needs, rank, usable, exclude)
            if chosen is not None:
                return chosen
        others = chain.from_iterable(self.by_class[c] for c in classes if c not in order)
        return self._walk(others, scorer, needs, rank, usable, exclude)

    def _walk(
        self,
        keys: Iterable[StateKey],
        scorer: Scorer,
        need_on: dict[int, int],
        rank: dict[str, int],
        usable: Callable[[StateKey], bool],
        exclude: Collection[str],
    ) -> str | None:
        """`Scorer`'s rule over many states, the cheap tests first: the states that
        lead on them, and only those, have their fragmentation measured. `need_on`: the
        share the request needs, by each GPU's memory."""
        needs, models = scorer.gpus, scorer.models
        wants_gpu, shares = scorer.wants_gpu, scorer.shares
        wants_cpus, wants_memory = scorer.cpus, scorer.memory
        groups = self.groups
        leading: list[tuple[StateKey, int, tuple[int, ...], float, str]] = []
        lead_now = float("inf")
        for key in keys:
            kind, free, cpus, memory, partial, drained, _isolating, _operators = key
            if (
                free < needs
                or cpus < wants_cpus
                or memory < wants_memory
                or drained
                or (wants_gpu and models and kind[0] not in models)
            ):
                continue
            left_free, left_partial = free - needs, partial
            if shares:
                need = need_on[kind[4]]
                # The most one GPU has free: a whole one, else the largest part.
                if need > (WHOLE if free else partial[-1] if partial else 0):
                    continue
                taken = share_taken(free, partial, need)
                if taken is None:
                    continue
                left_free, left_partial = taken
                lead = float(left_free if left_free < free else -1)
                after = 0.0
            elif wants_gpu:
                lead, after = 0.0, float(left_free)
            else:
                lead, after = float(free * WHOLE + sum(partial)), 0.0
            if lead > lead_now or not usable(key):
                continue
            names = groups[key]
            first = next(iter(names))
            if first in exclude:
                other = next((n for n in names if n not in exclude), None)
                if other is None:
                    continue
                first = other
            if lead < lead_now:
                lead_now, leading = lead, []
            leading.append((key, left_free, left_partial, after, first))
        measure = scorer.fragmentation
        best: tuple[float, float, int, str] | None = None
        for key, left_free, left_partial, after, first in leading:
            kind, free, cpus, memory, partial = key[:5]
            added = measure(
                (
                    kind[0],
                    left_free,
                    cpus - wants_cpus,
                    memory - wants_memory,
                    left_partial,
                    kind[4],
                )
            ) - measure((kind[0], free, cpus, memory, partial, kind[4]))
            ranked = (added, after, rank[first], first)
            if best is None or ranked < best:
                best = ranked
        return None if best is None else best[3]
