"""Which nodes may run whose code: the one rule the portal's admission check and the
scheduler's placement policy share (plain data in, no database)."""

from __future__ import annotations

from collections.abc import Collection

ISOLATING_RUNTIMES = frozenset({"docker"})


def may_run_on(
    *, isolating: bool, operators: Collection[str], username: str, trusted: bool
) -> bool:
    """A session may run on a node that isolates it from the host (a container), or,
    for a trusted user, on one that does not (the local runtime); a node that names its
    operators (an agent that cannot drop privileges) runs only their sessions."""
    if not isolating and not trusted:
        return False
    return not operators or username in operators


def refusal(isolating_exists: bool, trusted: bool) -> str:
    """Why a user's session has no node to run on, when nodes exist but none admits it."""
    if not trusted and not isolating_exists:
        return (
            "needs a node that runs sessions in containers (the Docker runtime), and none "
            "has joined: only trusted users' code runs outside one (an administrator "
            "grants the level)"
        )
    return (
        "may run on no node here: the nodes that could hold it run only their operators' sessions"
    )
