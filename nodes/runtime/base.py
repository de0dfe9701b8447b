from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RunSpec:
    session_id: int
    ident: str
    entry: str
    args: list[str]
    code_dir: Path
    output_dir: Path
    gpu_indices: list[int]
    cpus: float
    memory_mb: int
    image: str = ""
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    out_of_memory: bool = False


class Run(abc.ABC):
    """One running session."""

    spec: RunSpec

    @abc.abstractmethod
    def output(self) -> Iterator[str]:
        """The session's merged stdout and stderr, line by line, until it ends."""

    @abc.abstractmethod
    def wait(self) -> ExitInfo: ...

    @abc.abstractmethod
    def stop(self, grace_seconds: float) -> None:
        """Ask it to end, then force it after `grace_seconds`."""

    @abc.abstractmethod
    def kill(self) -> None: ...


class Runtime(abc.ABC):
    name: str

    @abc.abstractmethod
    def start(self, spec: RunSpec) -> Run: ...

    def check_memory(self, run: Run) -> bool:
        """Enforce the memory limit where the runtime has no kernel-side limit.
        Returns True when the run was killed for exceeding it."""
        return False
