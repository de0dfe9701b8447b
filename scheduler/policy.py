"""Placement policy: a pure function over plain data, shared by the live loop and tests.

Best fit: of the nodes that can hold a request, take the one with the fewest GPUs left
free afterwards, so that whole multi-GPU nodes stay free for the sessions that need
them (NSML, section 3.2.1). Ties go to less spare CPU and memory, then to the name, so
a decision is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    gpus: int = 0
    cpus: float = 1.0
    memory_mb: int = 0


@dataclass(frozen=True)
class NodeView:
    name: str
    total_gpus: int
    free_gpus: tuple[int, ...]  # indices of the GPUs nobody holds
    total_cpus: float
    free_cpus: float
    total_memory_mb: int
    free_memory_mb: int


@dataclass(frozen=True)
class Placement:
    node: str
    gpu_indices: tuple[int, ...]


def fits_now(node: NodeView, request: Request) -> bool:
    return (
        len(node.free_gpus) >= request.gpus
        and node.free_cpus >= request.cpus
        and node.free_memory_mb >= request.memory_mb
    )


def fits_ever(node: NodeView, request: Request) -> bool:
    """Could the node hold the request if nothing else ran on it?"""
    return (
        node.total_gpus >= request.gpus
        and node.total_cpus >= request.cpus
        and node.total_memory_mb >= request.memory_mb
    )


def best_fit(request: Request, nodes: Iterable[NodeView]) -> Placement | None:
    candidates = [node for node in nodes if fits_now(node, request)]
    if not candidates:
        return None
    chosen = min(
        candidates,
        key=lambda node: (
            len(node.free_gpus) - request.gpus,
            node.free_cpus - request.cpus,
            node.free_memory_mb - request.memory_mb,
            node.name,
        ),
    )
    return Placement(chosen.name, tuple(sorted(chosen.free_gpus)[: request.gpus]))


def never_fits_reason(request: Request, nodes: Sequence[NodeView]) -> str | None:
    """Why no node could ever hold `request`, or None when one could."""
    if not nodes or any(fits_ever(node, request) for node in nodes):
        return None
    most_gpus = max(node.total_gpus for node in nodes)
    most_cpus = max(node.total_cpus for node in nodes)
    most_memory = max(node.total_memory_mb for node in nodes)
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
