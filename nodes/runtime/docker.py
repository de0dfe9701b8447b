"""Docker containers: each session in a container of its own, from an image.

Code and output are bind-mounted (datasets read-only), memory, CPUs and process count
are limited by the engine, GPUs are passed as device requests with the allocated ids.
Labels tie each container to its node and session, so that a restarted agent adopts
the containers still running instead of starting them again, and removes those of
sessions the portal no longer runs. A container that fails to start is removed, never
left in Created state, and the error is reported in plain words.

Every container runs as an unprivileged user with no capabilities and
`no-new-privileges`. Grading containers (`RunSpec.grading`) also run with no network, a
read-only root file system, their test inputs and code read-only, only their output
folder writable, and a wall-time limit (`RunSpec.time_limit_s`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from requests.exceptions import RequestException

from nodes import environment
from nodes.runtime.base import (
    ExitInfo,
    Run,
    RunSpec,
    Runtime,
    Say,
    gpu_environment,
    remaining,
)
from nodes.runtime.environments import BuildFailed, EnvironmentBuilder, PackageSettings

log = logging.getLogger(__name__)

LABEL_NODE = "podium.node"
LABEL_SESSION = "podium.session"
LABEL_DATASETS = "podium.datasets"
LABEL_GRADING = "podium.grading"
LABEL_TIME_LIMIT = "podium.time-limit"
LABEL_GPUS = "podium.gpus"
LABEL_GPU_SHARE = "podium.gpu-share"  # a share of its GPU, held to it after a restart too
MOUNT_CODE, MOUNT_OUTPUT, MOUNT_DATASETS = "/podium/code", "/podium/output", "/podium/datasets"
MOUNT_INPUTS = "/podium/inputs"
NOBODY = 65534
DEFAULT_IMAGE = "podium/base:latest"


class DockerError(RuntimeError):
    pass


class DockerRun(Run):
    def __init__(self, spec: RunSpec, container: Any, started_at: float | None = None):
        self.spec = spec
        self.container = container
        self.started = time.monotonic()
        self.started_at = time.time() if started_at is None else started_at
        self.timed_out = False

    def output(self) -> Iterator[str]:
        pending = b""
        for chunk in self.container.logs(stream=True, follow=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", errors="replace").rstrip("\r")
        if pending:
            yield pending.decode("utf-8", errors="replace").rstrip("\r")

    def pids(self) -> set[int]:
        # `docker top` lists the container's processes by their ids on the host, which
        # is how NVML names them to the agent.
        try:
            top = self.container.top(ps_args="-o pid")
            return {int(row[0]) for row in top.get("Processes") or [] if row and row[0].isdigit()}
        except Exception:
            return set()

    def wait(self) -> ExitInfo:
        # Several threads may wait (the agent's monitor, its straggler reaper): the time
        # limit is enforced once and remembered on the run.
        try:
            result = self.container.wait(timeout=remaining(self.spec, self.started))
        except RequestException:  # the engine's answer did not come within the time limit
            self.timed_out = True
            self.kill()
            result = self.container.wait()
        self.container.reload()
        state = self.container.attrs.get("State", {})
        code = int(result.get("StatusCode", state.get("ExitCode", 1)))
        out_of_memory = bool(state.get("OOMKilled"))
        return ExitInfo(
            exit_code=-9 if out_of_memory and code == 137 else code,
            out_of_memory=out_of_memory,
            timed_out=self.timed_out,
        )

    def stop(self, grace_seconds: float) -> None:
        try:
            self.container.stop(timeout=max(1, int(grace_seconds)))
        except Exception as exc:  # already gone
            log.info("stop of %s: %s", self.container.name, exc)

    def kill(self) -> None:
        try:
            self.container.kill()
        except Exception as exc:  # already gone
            log.info("kill of %s: %s", self.container.name, exc)

    def exec(self, command: list[str], timeout: float) -> tuple[int, str]:
        # `timeout` runs inside the container: the engine's exec has no limit of its own.
        code, output = self.container.exec_run(
            ["timeout", f"{timeout:g}", *command], workdir=MOUNT_CODE, demux=False
        )
        text = (output or b"").decode("utf-8", errors="replace")
        if code == 127 and not text:
            text = f"{command[0]}: command not found\n"
        return int(code), text

    def usage(self) -> tuple[float, float] | None:
        """From the engine's statistics of the container's cgroup (cgroup v1 or v2)."""
        try:
            stats = self.container.stats(stream=False, one_shot=True)
        except Exception:
            return None
        cpu = (stats.get("cpu_stats") or {}).get("cpu_usage") or {}
        memory = stats.get("memory_stats") or {}
        if "total_usage" not in cpu or "usage" not in memory:
            return None  # stopped: the engine sends empty statistics
        details = memory.get("stats") or {}
        # What `docker stats` shows: the page cache the kernel can reclaim is not held.
        cache = details.get("inactive_file", details.get("total_inactive_file", 0))
        return cpu["total_usage"] / 1e9, max(memory["usage"] - cache, 0) / (1024 * 1024)

    def request_checkpoint(self) -> None:
        # The container's first process is the session's Python (no init in between).
        try:
            self.container.kill(signal="SIGUSR1")
        except Exception as exc:
            log.info("signalling %s: %s", self.container.name, exc)

    def remove(self) -> None:
        try:
            self.container.remove(force=True)
        except Exception as exc:
            log.info("removing %s: %s", self.container.name, exc)


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(
        self,
        client: Any = None,
        *,
        node: str = "",
        default_image: str = DEFAULT_IMAGE,
        network_mode: str = "host",
        packages: PackageSettings | None = None,
        environments_file: Path | None = None,
        environments_budget_bytes: int | None = None,
        build_timeout_s: float = 1800.0,
        build_network: str = "bridge",
        build_memory_mb: int = 4096,
    ):
        import docker

        super().__init__(node)
        self.docker = docker
        self.client = client or docker.from_env()
        self.default_image = default_image
        # Training sessions reach the portal's API from inside: the host's network.
        self.network_mode = network_mode
        self._gpu_refusal: str | None = None
        self.builder = EnvironmentBuilder(
            self.client,
            node=node,
            settings=packages or PackageSettings(),
            state_file=environments_file,
            budget_bytes=environments_budget_bytes,
            timeout_s=build_timeout_s,
            network=build_network,
            memory_mb=build_memory_mb,
        )

    def images(self) -> list[str]:
        """Image tags present on this node, for the scheduler's locality."""
        return sorted(tag for image in self.client.images.list() for tag in image.tags)

    def gpu_refusal(self) -> str | None:
        """Why this engine cannot hand GPUs to containers, or None. Device requests for
        GPUs need NVIDIA's container toolkit: its runtime registered with the engine, or
        its hook on the engine's PATH."""
        if self._gpu_refusal is None:
            try:
                runtimes = self.client.info().get("Runtimes") or {}
            except Exception:  # the engine will say more when the container is made
                runtimes = {}
            hook = shutil.which("nvidia-container-runtime-hook")
            self._gpu_refusal = (
                ""
                if "nvidia" in runtimes or hook
                else f"node {self.node}'s Docker engine cannot pass GPUs to containers: "
                "install NVIDIA Container Toolkit (`nvidia-ctk runtime configure "
                "--runtime=docker`, then restart dockerd), or run GPU sessions on a "
                "local-runtime node"
            )
        return self._gpu_refusal or None

    def environments(self) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in row.items() if not k.startswith("_")} for row in self.builder.held()
        ]

    def prepare(self, spec: RunSpec, say: Say) -> RunSpec:
        """The session's image: its environment's, built here first if this node has
        none yet; `--image` of anything but a Podium base image is taken as it is."""
        refusal = environment.image_refusal(spec.image)
        if refusal:
            raise BuildFailed("of this session", refusal)
        if spec.image and not environment.is_base(spec.image):
            return spec
        files = {}
        for name in environment.FILES:
            path = spec.code_dir / name
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise BuildFailed("of this session", f"{name} is not a plain file")
            if path.is_file():
                files[name] = path.read_bytes()[: environment.MAX_FILE_BYTES + 1]
        try:
            wanted = environment.Environment.from_files(files, base=spec.image)
        except environment.InvalidEnvironment as exc:
            raise BuildFailed("of this session", str(exc)) from None
        # The node builds what it unpacked, and only what the portal read at submission.
        if (wanted.digest if wanted else "") != spec.environment:
            raise BuildFailed(
                "of this session",
                "the code's environment files are not those read when it was submitted",
            )
        if wanted is None:
            return spec
        refusal = wanted.refusal(spec.trusted)
        if refusal:
            raise BuildFailed(wanted.tag, refusal)
        return replace(spec, image=self.builder.ensure(wanted, say))

    def _environment(self, spec: RunSpec) -> dict[str, str]:
        env = {k: v for k, v in spec.env.items() if k.startswith("PODIUM_")}
        env.update(
            PODIUM_OUTPUT=MOUNT_OUTPUT,
            PODIUM_DATASET_PATH=MOUNT_DATASETS,
            PYTHONUNBUFFERED="1",
            PYTHONPATH="/opt/podium",
        )
        if spec.inputs is not None:
            env["PODIUM_INPUTS"] = MOUNT_INPUTS
        # Inside, the container sees only its own GPUs, numbered from 0.
        env.update(gpu_environment(spec, range(len(spec.gpu_indices))))
        return env

    def start(self, spec: RunSpec) -> DockerRun:
        volumes = {
            str(spec.code_dir): {"bind": MOUNT_CODE, "mode": "ro" if spec.grading else "rw"},
            str(spec.output_dir): {"bind": MOUNT_OUTPUT, "mode": "rw"},
        }
        for mount, path in spec.datasets.items():
            volumes[str(path)] = {"bind": f"{MOUNT_DATASETS}/{mount}", "mode": "ro"}
        if spec.inputs is not None:
            volumes[str(spec.inputs)] = {"bind": MOUNT_INPUTS, "mode": "ro"}
        user = self._container_user(spec)
        options: dict[str, Any] = {
            "image": spec.image or self.default_image,
            "command": ["python3", "-u", spec.entry, *spec.args],
            "name": f"podium-{self.node}-{spec.session_id}",
            "working_dir": MOUNT_CODE,
            "environment": self._environment(spec),
            "volumes": volumes,
            "labels": {
                LABEL_NODE: self.node,
                LABEL_SESSION: str(spec.session_id),
                # For an agent that adopts it after a restart (on the host, not inside).
                LABEL_DATASETS: json.dumps({m: str(p) for m, p in spec.datasets.items()}),
                LABEL_GRADING: "1" if spec.grading else "0",
                LABEL_TIME_LIMIT: "" if spec.time_limit_s is None else str(spec.time_limit_s),
                LABEL_GPUS: ",".join(map(str, spec.gpu_indices)),
                LABEL_GPU_SHARE: "" if spec.gpu_share is None else f"{spec.gpu_share:g}",
            },
            "mem_limit": f"{spec.memory_mb}m",
            "memswap_limit": f"{spec.memory_mb}m",  # no swap: over the limit is OOM
            "nano_cpus": int(spec.cpus * 1e9),
            "pids_limit": 4096,
            # Not root, no capabilities, no privilege gained through setuid files: a
            # session cannot sniff the host's network it shares, nor leave a setuid
            # binary in its bind mounts.
            "user": user,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "detach": True,
            "network_mode": "none" if spec.grading else self.network_mode,
        }
        if spec.grading:
            options.update(read_only=True, tmpfs={"/tmp": "rw,size=256m"})
        if spec.gpu_indices:
            refusal = self.gpu_refusal()
            if refusal:
                raise DockerError(refusal)
            options["device_requests"] = [
                self.docker.types.DeviceRequest(
                    device_ids=[str(i) for i in spec.gpu_indices], capabilities=[["gpu"]]
                )
            ]
        container = None
        try:
            container = self.client.containers.create(**options)
            self.builder.release(options["image"])
            container.start()
        except self.docker.errors.ImageNotFound:
            self._discard(container)
            raise DockerError(
                f"image {options['image']} is not on node {self.node}: "
                "build it with `podium image build`"
            ) from None
        except self.docker.errors.APIError as exc:
            self._discard(container)
            raise DockerError(f"Docker could not start it: {exc.explanation or exc}") from None
        except Exception as exc:  # a timeout or a lost connection to the engine
            self._discard(container)
            raise DockerError(f"Docker could not start it: {exc}") from None
        return DockerRun(spec, container)

    @staticmethod
    def _container_user(spec: RunSpec) -> str:
        """The agent's own user, or `nobody` where the agent runs as root; the session's
        folders are handed to that user."""
        uid, gid = os.getuid(), os.getgid()
        if uid == 0:
            uid = gid = NOBODY
            for folder in (spec.code_dir, spec.output_dir):
                for path in (folder, *folder.rglob("*")):
                    os.lchown(path, uid, gid)
        return f"{uid}:{gid}"

    @staticmethod
    def _discard(container: Any) -> None:
        if container is not None:
            try:
                container.remove(force=True)
            except Exception as exc:
                log.warning("could not remove %s: %s", container.name, exc)

    def adopt(self) -> dict[int, Run]:
        """This node's containers, by session id, for a restarted agent: running ones to
        watch on, and those that ended while no agent watched, so that their exit code
        (or out-of-memory kill) is still reported; `finished` removes them after."""
        adopted: dict[int, Run] = {}
        for container in self.client.containers.list(
            all=True, filters={"label": f"{LABEL_NODE}={self.node}"}
        ):
            try:
                session_id = int(container.labels[LABEL_SESSION])
            except (KeyError, ValueError):
                log.warning("container %s has no session label; leaving it", container.name)
                continue
            if container.status in ("running", "exited"):
                adopted[session_id] = DockerRun(
                    _adopted_spec(session_id, container), container, _started_at(container)
                )
            else:  # created but never started, or dead: nothing to report
                self._discard(container)
        return adopted

    def finished(self, run: Run) -> None:
        assert isinstance(run, DockerRun)
        run.remove()


def _started_at(container: Any) -> float | None:
    """When the engine started the container (RFC 3339, to the nanosecond)."""
    text = (container.attrs.get("State") or {}).get("StartedAt") or ""
    found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", text)
    if not found:
        return None
    fraction = (found.group(2) or ".0")[:7]
    moment = datetime.fromisoformat(found.group(1) + fraction).replace(tzinfo=UTC)
    return moment.timestamp() if moment.year >= 2000 else None  # the engine's zero time


def _adopted_spec(session_id: int, container: Any) -> RunSpec:
    """What the agent needs of an adopted run, from the labels written at its start."""
    labels = container.labels
    config = container.attrs.get("HostConfig", {})
    try:
        datasets = {
            mount: Path(path)
            for mount, path in json.loads(labels.get(LABEL_DATASETS, "{}")).items()
        }
    except ValueError:
        datasets = {}
    limit = labels.get(LABEL_TIME_LIMIT)
    share = labels.get(LABEL_GPU_SHARE)
    return RunSpec(
        session_id=session_id,
        ident=str(session_id),
        entry="",
        args=[],
        code_dir=Path("."),
        output_dir=Path("."),
        gpu_indices=[int(i) for i in labels.get(LABEL_GPUS, "").split(",") if i.isdigit()],
        cpus=1,
        memory_mb=int(config.get("Memory", 0)) // (1024 * 1024),
        grading=labels.get(LABEL_GRADING) == "1",
        time_limit_s=float(limit) if limit else None,
        datasets=datasets,
        gpu_share=float(share) if share else None,
    )
