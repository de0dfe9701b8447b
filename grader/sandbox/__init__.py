"""Sandboxes for organisers' custom scorers, so that a scorer never reaches the grader's
label key, environment, database or network.

Each is a small adapter behind `Sandbox`, found by name in `SANDBOXES`.
`PODIUM_SCORER_SANDBOX` picks one: `auto` (the default) takes Docker where the engine
answers and the scorer image exists, else the `user` sandbox where the grader runs as
root; `docker` or `user` insist on that one. With none available a scorer is refused,
never run unisolated.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping

from grader.sandbox.base import Limits, Outcome, Sandbox, SandboxError, SandboxUnavailable
from grader.sandbox.docker import DockerSandbox
from grader.sandbox.user import UserSandbox

log = logging.getLogger(__name__)

SANDBOXES: dict[str, type[Sandbox]] = {"docker": DockerSandbox, "user": UserSandbox}
AUTO = ("docker", "user")  # in order of preference


def choose(mode: str) -> Sandbox:
    """The sandbox `mode` names, checked; SandboxUnavailable when it cannot run here."""
    if mode != "auto" and mode not in SANDBOXES:
        raise SandboxUnavailable(
            f"PODIUM_SCORER_SANDBOX={mode!r} is none of: auto, {', '.join(SANDBOXES)}"
        )
    reasons: list[tuple[str, str]] = []
    for name in AUTO if mode == "auto" else (mode,):
        candidate = SANDBOXES[name]()
        try:
            candidate.check()
        except SandboxUnavailable as exc:
            reasons.append((name, str(exc)))
            continue
        return candidate
    if mode == "auto":
        raise SandboxUnavailable(
            "custom scorers need Docker or a grader running as root to be isolated, and "
            f"this grader has neither ({'; '.join(f'{n}: {r}' for n, r in reasons)})"
        )
    raise SandboxUnavailable(
        f"custom scorers are set to run in the {mode} sandbox (PODIUM_SCORER_SANDBOX), "
        f"which is not available here: {reasons[0][1]}"
    )


@functools.cache
def configured() -> Sandbox:
    """Decided once per grader process; a refusal is not remembered, so that an engine
    started later is found without a restart."""
    sandbox = choose(os.environ.get("PODIUM_SCORER_SANDBOX", "auto"))
    log.info("custom scorers run in the %s sandbox", sandbox.name)
    return sandbox


def run(runner: str, files: Mapping[str, bytes], limits: Limits) -> Outcome:
    return configured().run(runner, files, limits)


__all__ = [
    "SANDBOXES",
    "Limits",
    "Outcome",
    "Sandbox",
    "SandboxError",
    "SandboxUnavailable",
    "choose",
    "configured",
    "run",
]
