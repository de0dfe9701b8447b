"""What a node has and how busy it is: CPUs and memory through psutil, GPUs through
NVML (the nvidia-ml-py distribution's `pynvml`).

Where NVIDIA's library is absent the node has no GPUs, unless its configuration
declares an inventory (`PODIUM_NODE_GPUS`), which is how a GPU-less machine simulates
a GPU node for the scheduler. Simulated GPUs are marked as such everywhere.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from typing import Any

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuInfo:
    index: int
    uuid: str
    model: str
    memory_mb: int
    simulated: bool = False


def parse_declared_gpus(spec: str) -> list[GpuInfo]:
    """`COUNT[:MODEL[:MEMORY_MB]]`, e.g. `4:A100-SXM4-80GB:81920`; empty for none."""
    spec = spec.strip()
    if not spec:
        return []
    count, _, rest = spec.partition(":")
    model, _, memory = rest.partition(":")
    if not count.isdigit() or (memory and not memory.isdigit()):
        raise ValueError(f"cannot read the GPU inventory {spec!r}: use COUNT[:MODEL[:MEMORY_MB]]")
    return [
        GpuInfo(
            index=i,
            uuid=f"SIM-{i}",
            model=model or "simulated",
            simulated=True,
            memory_mb=int(memory or 0),
        )
        for i in range(int(count))
    ]


class Nvml:
    """A thin handle on NVML; `available` is False where the library cannot load."""

    def __init__(self) -> None:
        self.available = False
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound and friends
            log.info("NVML not available (%s): no real GPUs on this node", exc)
            return
        self._nvml = pynvml
        self.available = True

    def inventory(self) -> list[GpuInfo]:
        if not self.available:
            return []
        nvml = self._nvml
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GpuInfo(
                    index=index,
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                    model=_text(nvml.nvmlDeviceGetName(handle)),
                    memory_mb=int(memory.total // (1024 * 1024)),
                )
            )
        return gpus

    def usage(self) -> list[dict[str, Any]]:
        if not self.available:
            return []
        nvml = self._nvml
        usage = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            reading: dict[str, Any] = {
                "index": index,
                "utilization_percent": rates.gpu,
                "memory_used_mb": int(memory.used // (1024 * 1024)),
            }
            # Not every board reports these (a MIG slice, some consumer cards).
            with contextlib.suppress(nvml.NVMLError):
                reading["temperature_c"] = nvml.nvmlDeviceGetTemperature(
                    handle, nvml.NVML_TEMPERATURE_GPU
                )
            with contextlib.suppress(nvml.NVMLError):
                reading["power_w"] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            usage.append(reading)
        return usage

    def processes(self) -> dict[int, tuple[int, dict[int, int]]]:
        """Per GPU index: its memory (MiB) and the MiB each process holds on it, by the
        host's process id (processes whose use NVML cannot tell are left out)."""
        if not self.available:
            return {}
        nvml = self._nvml
        found: dict[int, tuple[int, dict[int, int]]] = {}
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            total = int(nvml.nvmlDeviceGetMemoryInfo(handle).total // (1024 * 1024))
            held: dict[int, int] = {}
            with contextlib.suppress(nvml.NVMLError):
                for process in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    used = getattr(process, "usedGpuMemory", None)
                    if isinstance(used, int) and 0 <= used < 2**62:
                        held[process.pid] = held.get(process.pid, 0) + used // (1024 * 1024)
            found[index] = (total, held)
        return found

    def process_utilization(self, since_us: int = 0) -> dict[int, dict[int, float]]:
        """Per GPU index: each process's SM utilisation (percent of the GPU, averaged
        over NVML's samples since `since_us`, its clock in microseconds), by the host's
        process id. A GPU that keeps no per-process samples is left out."""
        if not self.available:
            return {}
        nvml = self._nvml
        found: dict[int, dict[int, float]] = {}
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            try:
                samples = nvml.nvmlDeviceGetProcessUtilization(handle, since_us)
            except nvml.NVMLError as exc:
                # No sample since then: nothing ran there; unsupported: unknown.
                if getattr(exc, "value", None) == nvml.NVML_ERROR_NOT_FOUND:
                    found[index] = {}
                continue
            by_pid: dict[int, list[int]] = {}
            for sample in samples:
                by_pid.setdefault(int(sample.pid), []).append(int(sample.smUtil))
            found[index] = {pid: sum(v) / len(v) for pid, v in by_pid.items()}
        return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ResourceProbe:
    def __init__(self, nvml: Nvml, declared_gpus: list[GpuInfo] | None = None):
        self.nvml = nvml
        self.declared_gpus = declared_gpus or []

    def gpus(self) -> list[GpuInfo]:
        real = self.nvml.inventory()
        return real if real else list(self.declared_gpus)

    def inventory(self) -> dict[str, Any]:
        return {
            "cpu_count": psutil.cpu_count() or 1,
            "memory_mb": psutil.virtual_memory().total // (1024 * 1024),
            "gpus": [asdict(g) for g in self.gpus()],
        }

    def sample(self) -> dict[str, Any]:
        memory = psutil.virtual_memory()
        return {
            "cpu_percent": psutil.cpu_percent(interval=None),
            "memory_percent": memory.percent,
            "memory_used_mb": (memory.total - memory.available) // (1024 * 1024),
            "gpus": self.nvml.usage(),
        }
