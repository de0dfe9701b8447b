"""Sampling what each running session uses, every few seconds, and shipping the samples
in batches (`POST /internal/sessions/ID/resources`), as logs are shipped.

A sample holds the session's CPU use (percent of one core, from the CPU seconds of its
processes or its container between two samples), its memory, and for each GPU it holds
the utilisation, memory used, temperature and power NVML reports. Simulated GPUs report
nothing: the portal then says that no utilisation is known. Samples carry the seconds
since the session started here, which only grow: a batch sent twice is stored once.
One thread samples every session; a failed shipment is kept and sent with the next.
A session on a share of a GPU is shown its own part of it: the memory its processes
hold and the utilisation they drive (NVML's per-process figures), not the board's.

The same thread holds a session with a share of a GPU to its share: the frameworks'
caps (`nodes/runtime/base.py`, `gpu_environment`) are the session's to ignore, so one
whose processes hold more of its GPU's memory than its share, with an allowance for
CUDA's own context, is killed with the reason, before it starves its neighbours there.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from nodes.client import PortalClient, PortalError
from nodes.probe import Nvml
from nodes.runtime import Run

log = logging.getLogger(__name__)

MAX_KEPT = 2000  # samples kept per session while the portal cannot be reached
# GPU memory a process holds beyond what its framework allocates (CUDA's context, its
# kernels), allowed over a session's share.
CONTEXT_ALLOWANCE_MB = 1024
# How the reason a session was killed over its share of a GPU reads (the portal grades
# a submission again on a whole GPU when its grading session ends so).
OVER_SHARE = "more than its share of"


def over_share(
    run: Run, gpu_indices: list[int], processes: dict[int, tuple[int, dict[int, int]]]
) -> str | None:
    """Why a session holding a share of a GPU is over it, or None."""
    share = run.spec.gpu_share
    if not share or len(gpu_indices) != 1 or gpu_indices[0] not in processes:
        return None
    index = gpu_indices[0]
    total, held = processes[index]
    mine = run.pids()
    used = sum(mb for pid, mb in held.items() if pid in mine)
    allowed = share * total
    if used <= allowed + CONTEXT_ALLOWANCE_MB:
        return None
    return (
        f"it held {used} MiB of GPU {index}'s memory, {OVER_SHARE} "
        f"{share:g} ({allowed:.0f} MiB, and {CONTEXT_ALLOWANCE_MB} MiB for CUDA's own)"
    )


def own_reading(
    reading: dict[str, Any],
    mine: set[int],
    held: dict[int, int] | None,
    utilization: dict[int, float] | None,
) -> dict[str, Any]:
    """A GPU's reading narrowed to one session's processes, for a session that holds a
    share of it: the memory they hold and the utilisation they drive, where NVML tells
    them apart (else left out, unknown, rather than its neighbours' counted as its own).
    Temperature and power stay the board's."""
    own = {k: v for k, v in reading.items() if k not in ("memory_used_mb", "utilization_percent")}
    if held is not None:
        own["memory_used_mb"] = sum(mb for pid, mb in held.items() if pid in mine)
    if utilization is not None:
        own["utilization_percent"] = round(
            min(100.0, sum(u for pid, u in utilization.items() if pid in mine)), 1
        )
    return own


@dataclass
class Watched:
    run: Run
    gpu_indices: list[int]
    started: float
    cpu_seconds: float | None = None
    at: float = 0.0
    pending: list[dict[str, Any]] = field(default_factory=list)


class ResourceMonitor:
    def __init__(
        self,
        client: PortalClient,
        nvml: Nvml,
        *,
        interval: float = 5.0,
        ship_every: int = 3,
    ):
        self.client = client
        self.nvml = nvml
        # Samples are numbered by the second: one a second at most.
        self.interval = max(1.0, interval)
        self.ship_every = ship_every
        self._watched: dict[int, Watched] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resources", daemon=True)
        self._thread.start()

    def watch(self, session_id: int, run: Run) -> None:
        with self._lock:
            self._watched[session_id] = Watched(run, list(run.spec.gpu_indices), time.monotonic())

    def finish(self, session_id: int) -> None:
        """Ship what is left unsent, before the session's end is reported."""
        with self._lock:
            watched = self._watched.pop(session_id, None)
        if watched is not None:
            self._ship(session_id, watched)

    def close(self) -> None:
        self._stopping.set()

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            with self._lock:
                watched = list(self._watched.items())
            if not watched:
                continue
            gpus = {reading["index"]: reading for reading in self._gpu_readings()}
            processes = self.hold_to_shares(watched)
            utilization = self._process_utilization() if processes is not None else None
            for session_id, entry in watched:
                sample = self.sample(entry, gpus, processes, utilization)
                if sample is not None:
                    entry.pending.append(sample)
                    del entry.pending[:-MAX_KEPT]
                if len(entry.pending) >= self.ship_every:
                    self._ship(session_id, entry)

    def hold_to_shares(
        self, watched: list[tuple[int, Watched]]
    ) -> dict[int, tuple[int, dict[int, int]]] | None:
        """Kill each session over its share of a GPU; the GPUs' processes as read, or
        None where no session holds a share (or they could not be read)."""
        if not any(entry.run.spec.gpu_share for _id, entry in watched):
            return None
        try:
            processes = self.nvml.processes()
        except Exception as exc:
            log.warning("reading the GPUs' processes failed: %s", exc)
            return None
        for session_id, entry in watched:
            reason = over_share(entry.run, entry.gpu_indices, processes)
            if reason and not entry.run.killed_because:
                log.warning("session %s went over its share of a GPU: killed", session_id)
                entry.run.killed_because = reason
                entry.run.kill()
        return processes

    def _process_utilization(self) -> dict[int, dict[int, float]]:
        since = int((time.time() - self.interval) * 1_000_000)
        try:
            return self.nvml.process_utilization(since)
        except Exception as exc:
            log.warning("reading the GPUs' per-process utilisation failed: %s", exc)
            return {}

    def _gpu_readings(self) -> list[dict[str, Any]]:
        try:
            return self.nvml.usage()
        except Exception as exc:
            log.warning("reading the GPUs failed: %s", exc)
            return []

    def sample(
        self,
        entry: Watched,
        gpus: dict[int, dict[str, Any]],
        processes: dict[int, tuple[int, dict[int, int]]] | None = None,
        utilization: dict[int, dict[int, float]] | None = None,
    ) -> dict[str, Any] | None:
        now = time.monotonic()
        used = entry.run.usage()
        if used is None:
            return None
        cpu_seconds, memory_mb = used
        cpu_percent = None
        if entry.cpu_seconds is not None and now > entry.at:
            cpu_percent = max(0.0, (cpu_seconds - entry.cpu_seconds) / (now - entry.at) * 100)
        entry.cpu_seconds, entry.at = cpu_seconds, now
        readings = [gpus[i] for i in entry.gpu_indices if i in gpus]
        if entry.run.spec.gpu_share and readings:
            # Its GPU is shared: the board's figures are its neighbours' too.
            mine = entry.run.pids()
            readings = [
                own_reading(
                    reading,
                    mine,
                    processes[reading["index"]][1]
                    if processes and reading["index"] in processes
                    else None,
                    (utilization or {}).get(reading["index"]),
                )
                for reading in readings
            ]
        sample: dict[str, Any] = {
            "t": int(now - entry.started),
            "memory_mb": round(memory_mb, 1),
            "gpus": readings,
        }
        if cpu_percent is not None:
            sample["cpu_percent"] = round(cpu_percent, 1)
        return sample

    def _ship(self, session_id: int, entry: Watched) -> None:
        batch = list(entry.pending)
        if not batch:
            return
        try:
            self.client.ship_resources(session_id, batch)
        except PortalError as exc:
            if exc.status is not None and exc.status < 500:
                log.warning("resource samples of %s refused: %s", session_id, exc)
            else:
                log.warning("shipping resource samples of %s failed: %s", session_id, exc)
                return  # kept, sent with the next batch
        except Exception as exc:
            log.warning("shipping resource samples of %s failed: %s", session_id, exc)
            return
        del entry.pending[: len(batch)]
