"""The work a node takes from the portal (`/internal/nodes/work`, with its node token).

Each job kind (start, stop, exec, checkpoint) names one method of the agent, and
nothing else runs: a job is data (`{"id", "kind", "session_id", ...}`), never a
function to call. Starts run a few at a
time on threads of their own (a start may copy datasets or build an environment for
minutes, and must not hold up the others); stops and execs run at once, each on its own
thread. Every job's outcome goes back to the portal.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from nodes.agent import Agent
from nodes.client import PortalClient, PortalError

log = logging.getLogger(__name__)

POLL_SECONDS = 20.0
CONCURRENT_STARTS = 4


def _start(agent: Agent, job: dict) -> dict:
    started = agent.start_session(int(job["session_id"]))
    return {"started": bool(started)}


def _stop(agent: Agent, job: dict) -> dict:
    agent.stop_session(int(job["session_id"]))
    return {}


def _checkpoint(agent: Agent, job: dict) -> dict:
    return agent.checkpoint_session(int(job["session_id"]))


def _exec(agent: Agent, job: dict) -> dict:
    command = job.get("command")
    if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
        return {"error": "the command is not a list of strings"}
    timeout = min(float(job.get("timeout", 60.0)), 600.0)
    return agent.exec_in_session(int(job["session_id"]), command, timeout)


HANDLERS: dict[str, Callable[[Agent, dict], dict]] = {
    "start": _start,
    "stop": _stop,
    "exec": _exec,
    "checkpoint": _checkpoint,
}


class WorkLoop:
    def __init__(self, agent: Agent, client: PortalClient):
        self.agent = agent
        self.client = client
        self.starts: queue.Queue[dict] = queue.Queue()
        self.stopping = threading.Event()

    def run(self) -> None:
        """Take work until `stopping` is set (or the process is interrupted)."""
        threading.Thread(target=self._start_loop, name="starts", daemon=True).start()
        failures = 0
        while not self.stopping.is_set():
            try:
                jobs = self.client.take_work(POLL_SECONDS)
                failures = 0
            except PortalError as exc:
                if exc.status in (401, 403):
                    raise SystemExit(f"the portal refused this node: {exc}") from exc
                failures += 1
                log.warning("taking work failed: %s", exc)
                self.stopping.wait(min(0.2 * 2**failures, 5))
                continue
            except Exception as exc:
                failures += 1
                log.warning("taking work failed: %s", exc)
                self.stopping.wait(min(0.2 * 2**failures, 5))
                continue
            for job in jobs:
                self.dispatch(job)

    def dispatch(self, job: dict) -> None:
        kind = job.get("kind")
        if kind not in HANDLERS or "session_id" not in job:
            log.error("refusing a job of kind %r: this agent runs only %s", kind, list(HANDLERS))
            self._report(job, {"error": f"unknown job kind {kind!r}"})
            return
        if kind == "start":
            self.starts.put(job)
        else:
            threading.Thread(target=self._run, args=(job,), daemon=True).start()

    def _start_loop(self) -> None:
        slots = threading.BoundedSemaphore(CONCURRENT_STARTS)
        while True:
            job = self.starts.get()
            slots.acquire()
            threading.Thread(target=self._start_one, args=(job, slots), daemon=True).start()

    def _start_one(self, job: dict, slots: threading.BoundedSemaphore) -> None:
        try:
            self._run(job)
        finally:
            slots.release()

    def _run(self, job: dict) -> None:
        try:
            result = HANDLERS[job["kind"]](self.agent, job)
        except Exception:
            # The details stay in the node's log: an exception's text may name its files.
            log.exception("job %s failed", job.get("id"))
            result = {"error": "the node could not do it (its log says why)"}
        self._report(job, result)

    def _report(self, job: dict, result: dict[str, Any]) -> None:
        for attempt in range(10):
            try:
                self.client.job_done(str(job.get("id")), result)
                return
            except PortalError as exc:
                if exc.status and exc.status < 500:
                    return
            except Exception:
                pass
            time.sleep(min(0.2 * 2**attempt, 5))
