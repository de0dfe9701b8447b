"""The `docker` sandbox: the scorer runs in a container of `PODIUM_SCORER_IMAGE` with no
network, a read-only root, no capabilities, `no-new-privileges`, user `nobody`, memory,
process and CPU-time limits, and only its work folder (scorer.py and input.json) mounted,
read-only. The score comes back on the container's stdout; the container is removed
however the run ended.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
from docker.types import LogConfig, Ulimit
from requests.exceptions import RequestException

from grader.sandbox.base import Limits, Outcome, Sandbox, SandboxError, SandboxUnavailable

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "podium/base:latest"
NOBODY = 65534
MOUNT_WORK = "/scorer"
LABEL_SCORER = "podium.scorer"
OUTPUT_LINES = 20  # of the scorer's stderr: its last line is all we show


class DockerSandbox(Sandbox):
    name = "docker"

    def __init__(self, client: Any = None, image: str | None = None) -> None:
        self.client = client
        self.image = image or os.environ.get("PODIUM_SCORER_IMAGE", DEFAULT_IMAGE)

    def check(self) -> None:
        try:
            client = self.client or docker.from_env(timeout=10)
            client.ping()
        except Exception as exc:
            raise SandboxUnavailable(
                f"no Docker engine answers ({exc.__class__.__name__})"
            ) from None
        try:
            client.images.get(self.image)
        except Exception:
            raise SandboxUnavailable(f"no image {self.image} (`make images` builds it)") from None
        self.client = client

    def run(self, runner: str, files: Mapping[str, bytes], limits: Limits) -> Outcome:
        if self.client is None:
            self.check()
        with tempfile.TemporaryDirectory(prefix="podium-scorer-") as folder:
            # `nobody` in the container must read the files, whatever the grader's umask;
            # the 0700 folder around them keeps the host's other users out.
            work = Path(folder) / "work"
            work.mkdir()
            for name, data in files.items():
                (work / name).write_bytes(data)
                (work / name).chmod(0o644)
            work.chmod(0o755)
            container = None
            try:
                container = self.client.containers.create(**self._options(runner, work, limits))
                container.start()
                return _wait(container, limits)
            except Exception as exc:  # the engine refused, or went away
                raise SandboxError(f"Docker could not run the scorer: {exc}") from None
            finally:
                if container is not None:
                    try:
                        container.remove(force=True)
                    except Exception as exc:
                        log.warning("could not remove scorer container %s: %s", container.name, exc)

    def _options(self, runner: str, work: Path, limits: Limits) -> dict[str, Any]:
        return {
            "image": self.image,
            "command": ["python3", "-I", "-c", runner],
            "name": f"podium-scorer-{secrets.token_hex(6)}",
            "labels": {LABEL_SCORER: "1"},
            "working_dir": MOUNT_WORK,
            "volumes": {str(work): {"bind": MOUNT_WORK, "mode": "ro"}},
            "user": f"{NOBODY}:{NOBODY}",
            "network_mode": "none",
            "read_only": True,
            "tmpfs": {"/tmp": "rw,noexec,nosuid,size=64m"},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "mem_limit": limits.memory_bytes,
            "memswap_limit": limits.memory_bytes,  # no swap: over the limit is out of memory
            "pids_limit": limits.processes,
            "nano_cpus": 1_000_000_000,
            "ulimits": [
                Ulimit(name="cpu", soft=limits.cpu_s, hard=limits.cpu_s + 1),
                # Python raises MemoryError at this one, before the engine's OOM kill.
                Ulimit(name="data", soft=limits.memory_bytes, hard=limits.memory_bytes),
                Ulimit(name="fsize", soft=limits.file_bytes, hard=limits.file_bytes),
                Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
                Ulimit(name="core", soft=0, hard=0),
            ],
            # A scorer that prints without end fills a bounded log, not the engine's disk.
            "log_config": LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
            "detach": True,
        }


def _wait(container: Any, limits: Limits) -> Outcome:
    timed_out = False
    try:
        code = int(container.wait(timeout=limits.wall_s).get("StatusCode", 1))
    except RequestException:  # no answer within the wall-clock limit
        timed_out = True
        try:
            container.kill()
        except Exception as exc:  # it ended meanwhile
            log.info("kill of %s: %s", container.name, exc)
        code = int(container.wait().get("StatusCode", 1))
    container.reload()
    state = container.attrs.get("State", {})
    return Outcome(
        exit_code=-(code - 128) if code > 128 else code,  # the engine reports 128 + signal
        stdout=container.logs(stdout=True, stderr=False, tail=OUTPUT_LINES),
        stderr=container.logs(stdout=False, stderr=True, tail=OUTPUT_LINES),
        timed_out=timed_out,
        out_of_memory=bool(state.get("OOMKilled")),
    )
