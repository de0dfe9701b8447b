"""Runtimes run a session's code: local processes here, Docker containers beside them.

Each is a small adapter behind `Runtime`, found by name in `RUNTIMES`.
"""

from __future__ import annotations

from typing import Any

from nodes.runtime.base import ExitInfo, Run, RunSpec, Runtime
from nodes.runtime.docker import DockerRuntime
from nodes.runtime.local import LocalRuntime

RUNTIMES: dict[str, type[Runtime]] = {"local": LocalRuntime, "docker": DockerRuntime}


def get_runtime(name: str, **options: Any) -> Runtime:
    try:
        runtime_class = RUNTIMES[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}") from None
    return runtime_class(**options)


__all__ = ["RUNTIMES", "ExitInfo", "Run", "RunSpec", "Runtime", "get_runtime"]
