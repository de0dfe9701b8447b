"""Runtimes run a session's code: local processes here, Docker containers beside them.

Each is a small adapter behind `Runtime`, found by name in `RUNTIMES`.
"""

from __future__ import annotations

from nodes.runtime.base import ExitInfo, Run, RunSpec, Runtime
from nodes.runtime.local import LocalRuntime

RUNTIMES: dict[str, type[Runtime]] = {"local": LocalRuntime}


def get_runtime(name: str) -> Runtime:
    try:
        return RUNTIMES[name]()
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}") from None


__all__ = ["RUNTIMES", "ExitInfo", "Run", "RunSpec", "Runtime", "get_runtime"]
