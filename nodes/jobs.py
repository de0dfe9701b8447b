"""RQ entry points on a node's own queue. They take ids and hand off to the agent of
this process, which `attach` sets when the agent starts."""

from __future__ import annotations

from nodes.agent import Agent

_agent: Agent | None = None


def attach(agent: Agent) -> None:
    global _agent
    _agent = agent


def _current() -> Agent:
    if _agent is None:
        raise RuntimeError("no node agent runs in this process")
    return _agent


def start_session(session_id: int) -> None:
    _current().start_session(session_id)


def stop_session(session_id: int) -> None:
    _current().stop_session(session_id)


def exec_in_session(session_id: int, command: list[str], timeout: float) -> dict:
    return _current().exec_in_session(session_id, command, timeout)
