"""What every scorer sandbox promises: run `python3 -I -c RUNNER` in a folder holding only
the given files, out of reach of the grader's environment, key, database and network,
within the limits, and report how it ended."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass

OUTPUT_BYTES = 64 * 1024  # what is kept of a scorer's output: its last line is all we show


class SandboxError(RuntimeError):
    """The scorer could not be run isolated; the message says why, in plain words."""


class SandboxUnavailable(SandboxError):
    """This sandbox cannot run here (no engine, not root, ...)."""


@dataclass(frozen=True)
class Limits:
    cpu_s: int
    memory_bytes: int
    file_bytes: int = 16 * 1024**2
    open_files: int = 64
    processes: int = 64

    @property
    def wall_s(self) -> float:
        # A scorer that sleeps or waits on nothing uses no CPU time: the clock stops it.
        return 2.0 * self.cpu_s


@dataclass(frozen=True)
class Outcome:
    exit_code: int  # negative: killed by that signal
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    out_of_memory: bool = False


class Sandbox(abc.ABC):
    name: str

    @abc.abstractmethod
    def check(self) -> None:
        """Raise SandboxUnavailable, with the reason, when this sandbox cannot run here."""

    @abc.abstractmethod
    def run(self, runner: str, files: Mapping[str, bytes], limits: Limits) -> Outcome:
        """Run `runner` (Python source) with `files` in its working folder."""
