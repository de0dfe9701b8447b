from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    grading: bool = False  # no network, read-only code and root, only output writable
    inputs: Path | None = None  # a grading run's test inputs, mounted read-only
    time_limit_s: float | None = None  # wall time, after which the run is killed
    datasets: dict[str, Path] = field(default_factory=dict)  # mount name -> cached copy
    trusted: bool = False  # its owner's code may run beside the agent (and build as root)
    environment: str = ""  # the digest of the environment the portal read at submission
    gpu_share: float | None = None  # a share of its one GPU (a memory cap); None: whole


Say = Callable[[str], None]  # a line for the session's log


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    out_of_memory: bool = False
    timed_out: bool = False


def gpu_environment(spec: RunSpec, visible: Iterable[int]) -> dict[str, str]:
    """What a session's processes learn of their GPUs: which they see (`visible`, as
    numbered where they run) and, for a share of one GPU, the part of its memory they
    may use: PyTorch has no variable for it, so the SDK applies PODIUM_GPU_MEMORY_FRACTION
    (`cli/sdk.py`); JAX reads its own; TensorFlow is told to grow its memory as needed
    rather than take it all. None of this is isolation: code may ignore it (no MPS or
    MIG partitioning here)."""
    env = {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in visible)}
    if spec.gpu_share:
        env.update(
            PODIUM_GPU_MEMORY_FRACTION=f"{spec.gpu_share:g}",
            XLA_PYTHON_CLIENT_MEM_FRACTION=f"{spec.gpu_share:g}",
            TF_FORCE_GPU_ALLOW_GROWTH="true",
        )
    return env


def remaining(spec: RunSpec, started: float) -> float | None:
    """Seconds left of the run's time limit (monotonic clock), or None for no limit."""
    if spec.time_limit_s is None:
        return None
    # Never 0: some clients read a zero timeout as "do not wait at all", or refuse it.
    return max(0.001, spec.time_limit_s - (time.monotonic() - started))


class Run(abc.ABC):
    """One running session."""

    spec: RunSpec
    # When it started (seconds since the epoch): resource samples count from it, also
    # for a run a restarted agent adopts.
    started_at: float = 0.0
    # Why the node killed it, when it did so for breaking a limit the runtime itself
    # does not enforce (more of a shared GPU's memory than its share).
    killed_because: str = ""

    def pids(self) -> set[int]:
        """The host's process ids of its processes (empty: not known)."""
        return set()

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

    @abc.abstractmethod
    def exec(self, command: list[str], timeout: float) -> tuple[int, str]:
        """Run `command` beside the session (in its container, its folder and
        environment); return its exit code and merged output."""

    @abc.abstractmethod
    def usage(self) -> tuple[float, float] | None:
        """CPU seconds its processes have used so far, and the memory they hold (MiB);
        None once it is gone."""

    @abc.abstractmethod
    def request_checkpoint(self) -> None:
        """Send its main process SIGUSR1, on which the SDK calls the bound `save`."""


class Runtime(abc.ABC):
    name: str

    def __init__(self, node: str = ""):
        self.node = node

    @abc.abstractmethod
    def start(self, spec: RunSpec) -> Run: ...

    def adopt(self) -> dict[int, Run]:
        """Sessions still running from before the agent restarted, by session id."""
        return {}

    def finished(self, run: Run) -> None:
        """Called once the portal has a run's end: release what it holds."""
        return None

    def images(self) -> list[str] | None:
        """Images this node holds, for the scheduler's locality; None: not applicable."""
        return None

    def environments(self) -> list[dict[str, Any]] | None:
        """The environment images this node holds (`podium env ls`); None: none apply."""
        return None

    def prepare(self, spec: RunSpec, say: Say) -> RunSpec:
        """Make ready what the session needs before it starts (its environment), telling
        the session's log how it goes; the spec to start. Raises what stops it."""
        return spec

    def check_memory(self, run: Run) -> bool:
        """Enforce the memory limit where the runtime has no kernel-side limit.
        Returns True when the run was killed for exceeding it."""
        return False
