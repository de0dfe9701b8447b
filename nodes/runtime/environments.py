"""Environment images on a Docker node: built once per node, reused, evicted when old.

`podium/env:<digest>` holds what a session's code folder asks for (`nodes.environment`):
- a `Dockerfile` is built by the engine's builder (its steps run as root there: only
  trusted users' Dockerfiles reach this point);
- `apt.txt` and `requirements.txt` are installed in a build container started from the
  base (or the Dockerfile's image), then committed. apt-get runs as the container's root
  with the few capabilities dpkg needs, on package names only; pip runs as `nobody`
  with no capability at all, against the site's package index (`PackageSettings`), with
  local wheel folders and the CA bundle mounted read-only. Nothing else runs.

One build per environment at a time: sessions that need the one being built wait for it
and then use it. A failed build tags nothing and leaves no container or intermediate
image behind; its lines went to the session's log, and its last lines are the reason the
session failed. Images beyond the disk budget go least recently used first, never one a
container uses.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from nodes.environment import (
    APT,
    DOCKERFILE,
    ENV_REPOSITORY,
    REQUIREMENTS,
    Environment,
    check_apt,
    dockerfile_bases,
)

log = logging.getLogger(__name__)

LABEL_ENV = "podium.env"
LABEL_BASE_ID = "podium.env.base-id"
NOBODY = 65534
FILES_MOUNT = "/tmp/podium-build/files"
SCRIPT = "build.sh"
CA_MOUNT = "/tmp/podium-build/ca.crt"
REASON_LINES = 6
# An image handed to a session is kept from eviction until its container exists.
RESERVE_SECONDS = 600.0
# What dpkg needs as root in the build container (files of other owners, setuid bits in
# packages); nothing that reaches past the container.
APT_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID"]

Say = Callable[[str], None]


class BuildFailed(RuntimeError):
    """The environment did not build; the message ends with the build's last lines."""

    def __init__(self, tag: str, why: str, lines: Iterable[str] = ()):
        tail = [line for line in lines if line.strip()][-REASON_LINES:]
        super().__init__(
            f"the environment {tag} did not build: {why}"
            + (" | " + " | ".join(tail) if tail else "")
        )


def _paths(value: str) -> tuple[str, ...]:
    return tuple(part for part in value.replace(",", " ").split() if part)


@dataclass(frozen=True)
class PackageSettings:
    """Where builds get packages: pip's index, extra indexes, local wheel folders, and
    the CA bundle that verifies them (for sites behind a mirror or a proxy of their
    own). Read from PODIUM_NODE_PIP_INDEX_URL, PODIUM_NODE_PIP_EXTRA_INDEX_URL,
    PODIUM_NODE_PIP_FIND_LINKS and PODIUM_NODE_BUILD_CA_BUNDLE, else from pip's own
    PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS and PIP_CERT; Debian packages come
    from the mirror the base image was built with (`podium image build --mirror`)."""

    index_url: str = ""
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    ca_bundle: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PackageSettings:
        def pick(podium: str, pip: str) -> str:
            return environ.get(podium) or environ.get(pip) or ""

        ca_bundle = pick("PODIUM_NODE_BUILD_CA_BUNDLE", "PIP_CERT") or environ.get(
            "SSL_CERT_FILE", ""
        )
        return cls(
            index_url=pick("PODIUM_NODE_PIP_INDEX_URL", "PIP_INDEX_URL"),
            extra_index_urls=_paths(pick("PODIUM_NODE_PIP_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL")),
            find_links=_paths(pick("PODIUM_NODE_PIP_FIND_LINKS", "PIP_FIND_LINKS")),
            ca_bundle=ca_bundle if ca_bundle and Path(ca_bundle).is_file() else "",
        )

    def local_folders(self) -> list[str]:
        """The folders on this machine that the locations name (plain paths and file://
        URLs): mounted read-only, at the same path, into build containers."""
        folders = []
        for location in (self.index_url, *self.extra_index_urls, *self.find_links):
            if not location:
                continue
            parsed = urlparse(location)
            path = parsed.path if parsed.scheme == "file" else location
            if (not parsed.scheme or parsed.scheme == "file") and os.path.isdir(path):
                folders.append(os.path.realpath(path))
        return sorted(set(folders))

    def pip_arguments(self) -> list[str]:
        arguments = []
        if self.index_url:
            arguments += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            arguments += ["--extra-index-url", url]
        for location in self.find_links:
            arguments += ["--find-links", location]
        if self.ca_bundle:
            arguments += ["--cert", CA_MOUNT]
        return arguments


class EnvironmentBuilder:
    def __init__(
        self,
        client: Any,
        *,
        node: str,
        settings: PackageSettings,
        state_file: Path | None = None,
        budget_bytes: int | None = None,
        timeout_s: float = 1800.0,
        network: str = "bridge",
        memory_mb: int = 4096,
    ):
        import docker

        self.docker = docker
        self.client = client
        self.node = node
        self.settings = settings
        self.state_file = state_file
        self.budget_bytes = budget_bytes
        self.timeout_s = timeout_s
        # Builds reach the package registries, not the node's own services on loopback.
        self.network = network
        self.memory_mb = memory_mb
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._building: set[str] = set()
        self._reserved: dict[str, list[float]] = {}  # tag -> until when, one per session
        self._used: dict[str, dict[str, float]] = self._load()
        self._discard_leftovers()

    # Bookkeeping ---------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, float]]:
        if self.state_file is None:
            return {}
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in state.items() if isinstance(v, dict)}

    def _save(self) -> None:
        if self.state_file is None:
            return
        partial = self.state_file.with_suffix(".partial")
        partial.write_text(json.dumps(self._used))
        os.replace(partial, self.state_file)

    def _touch(self, tag: str, size: float | None = None) -> None:
        with self._guard:
            entry = self._used.setdefault(tag, {})
            entry["last_used"] = time.time()
            if size is not None:
                entry["size"] = size
            self._save()

    def _discard_leftovers(self) -> None:
        """Build containers an earlier agent left when it stopped mid-build."""
        try:
            for container in self.client.containers.list(
                all=True, filters={"name": self._container_prefix}
            ):
                if container.name.startswith(self._container_prefix):
                    container.remove(force=True)
        except Exception as exc:
            log.warning("could not clear earlier build containers: %s", exc)

    @property
    def _container_prefix(self) -> str:
        return f"podium-build-{self.node}-"

    def _lock_for(self, tag: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(tag, threading.Lock())

    def _reserve(self, tag: str) -> None:
        with self._guard:
            self._reserved.setdefault(tag, []).append(time.monotonic() + RESERVE_SECONDS)

    def release(self, tag: str) -> None:
        """One session's container exists: it now keeps the image from eviction."""
        with self._guard:
            held = self._reserved.get(tag)
            if held:
                held.pop(0)
                if not held:
                    del self._reserved[tag]

    def _protected(self) -> set[str]:
        now = time.monotonic()
        with self._guard:
            reserved = {tag for tag, until in self._reserved.items() if max(until) > now}
            return reserved | self._building

    # Building ------------------------------------------------------------------------

    def ensure(self, environment: Environment, say: Say) -> str:
        """The environment's image tag, built first if this node does not hold it (or
        holds one built on another version of its base). The tag stays reserved for the
        caller until `release`."""
        tag = environment.tag
        lock = self._lock_for(tag)
        if lock.locked():
            say(f"podium: waiting for the build of {tag} that another session started")
        with lock:
            self._reserve(tag)
            try:
                self._ensure_locked(environment, say)
            except BaseException:
                self.release(tag)
                raise
        try:
            self.evict()
        except Exception as exc:  # the session has its image; eviction waits for the next
            log.warning("evicting environment images failed: %s", exc)
        return tag

    def _ensure_locked(self, environment: Environment, say: Say) -> None:
        tag = environment.tag
        bases = self._base_images(environment)
        held = self._image(tag)
        if held is not None and held.labels.get(LABEL_BASE_ID) == bases[0].id:
            self._touch(tag)
            say(f"podium: environment {tag} is on this node already")
            return
        with self._guard:
            self._building.add(tag)
        try:
            started = time.monotonic()
            say(f"podium: building environment {tag} from {', '.join(environment.files)}")
            image = self._build(environment, bases[0], say)
            size = float(image.attrs.get("Size", 0)) - float(bases[0].attrs.get("Size", 0))
            self._touch(tag, size=max(size, 0.0))
            say(f"podium: environment {tag} built in {time.monotonic() - started:.1f} s")
        finally:
            with self._guard:
                self._building.discard(tag)
        if held is not None and held.id != image.id:
            # Built on a base that has since been rebuilt: the old image goes.
            self._remove_images([held.id])

    def _image(self, name: str) -> Any | None:
        try:
            return self.client.images.get(name)
        except self.docker.errors.ImageNotFound:
            return None

    def _base_images(self, environment: Environment) -> list[Any]:
        """Every image the build starts or copies from, on this node: the engine's
        builder would otherwise pull a missing one from a registry."""
        names = (
            dockerfile_bases(environment.dockerfile)
            if environment.dockerfile.strip()
            else [environment.base]
        )
        images = []
        for name in names:
            image = self._image(name)
            if image is None:
                raise BuildFailed(
                    environment.tag,
                    f"its base image {name} is not on node {self.node} "
                    "(build it with `podium image build`)",
                )
            images.append(image)
        return images

    def _labels(self, environment: Environment, base: Any) -> dict[str, str]:
        return {LABEL_ENV: environment.digest, LABEL_BASE_ID: base.id}

    def _build(self, environment: Environment, base: Any, say: Say) -> Any:
        labels = self._labels(environment, base)
        repository, _, version = environment.tag.partition(":")
        existing = {image.id for image in self.client.images.list(all=True)}
        with tempfile.TemporaryDirectory(prefix="podium-env-") as folder:
            files = Path(folder)
            files.chmod(0o755)
            self._write_files(environment, files)
            start_from = base.id
            if environment.dockerfile.strip():
                start_from = self._build_dockerfile(environment, files, say, labels, existing)
                if not (environment.requirements.strip() or environment.apt.strip()):
                    self.client.api.tag(start_from, repository, version)
                    return self.client.images.get(environment.tag)
            try:
                self._install(environment, start_from, files, say, labels, repository, version)
            except BaseException:
                if start_from != base.id:  # the Dockerfile's image, made for this build
                    self._remove_images([start_from], keep=existing)
                raise
        return self.client.images.get(environment.tag)

    def _write_files(self, environment: Environment, files: Path) -> None:
        """The build's context: the environment's files only (the code comes at run
        time), apt's list normalised, and the build script (not in the command line,
        which the image's history would keep)."""
        script, _ = self._script(environment)
        for name, text in (
            (DOCKERFILE, environment.dockerfile),
            (REQUIREMENTS, environment.requirements),
            (APT, "\n".join(check_apt(environment.apt)) + "\n"),
            (SCRIPT, script + "\n"),
        ):
            (files / name).write_text(text)
            (files / name).chmod(0o644)

    def _build_dockerfile(
        self,
        environment: Environment,
        context: Path,
        say: Say,
        labels: dict[str, str],
        existing: set[str],
    ) -> str:
        made: list[str] = []
        lines: deque[str] = deque(maxlen=50)
        image_id = ""
        try:
            for chunk in self.client.api.build(
                path=str(context),
                dockerfile=DOCKERFILE,
                rm=True,
                forcerm=True,
                pull=False,
                network_mode=self.network,
                labels=labels,
                decode=True,
                timeout=self.timeout_s,
                buildargs=self._build_arguments(),
                container_limits={"memory": self.memory_mb * 2**20},
            ):
                if "stream" in chunk:
                    for line in chunk["stream"].splitlines():
                        lines.append(line)
                        say(line)
                        # The classic builder names each step's image: " ---> 1a2b3c".
                        if line.startswith(" ---> ") and " " not in line[6:].strip():
                            made.append(line[6:].strip())
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    say(chunk["error"].rstrip())
                    lines.append(chunk["error"].rstrip())
                    raise BuildFailed(environment.tag, "its Dockerfile failed", lines)
        except BuildFailed:
            self._remove_images(made, keep=existing)
            raise
        except self.docker.errors.APIError as exc:
            self._remove_images(made, keep=existing)
            raise BuildFailed(
                environment.tag, f"its Dockerfile failed: {exc.explanation or exc}", lines
            ) from None
        except Exception as exc:  # the engine stopped answering, or took too long
            self._remove_images(made, keep=existing)
            raise BuildFailed(
                environment.tag, f"its Dockerfile's build broke off: {exc}", lines
            ) from None
        if not image_id:
            self._remove_images(made, keep=existing)
            raise BuildFailed(environment.tag, "the builder named no image", lines)
        return image_id

    def _build_arguments(self) -> dict[str, str]:
        """pip's settings, for Dockerfiles that declare `ARG PIP_INDEX_URL` and the like."""
        arguments = {}
        if self.settings.index_url:
            arguments["PIP_INDEX_URL"] = self.settings.index_url
        if self.settings.extra_index_urls:
            arguments["PIP_EXTRA_INDEX_URL"] = " ".join(self.settings.extra_index_urls)
        return arguments

    def _remove_images(self, ids: list[str], keep: frozenset[str] | set[str] = frozenset()) -> None:
        """Remove images this build made, never one that was there before it (the
        builder names the base's id too, and cached steps belong to other images)."""
        for image_id in reversed(ids):
            try:
                full = self.client.images.get(image_id).id
            except Exception:
                continue
            if full in keep:
                continue
            try:
                self.client.images.remove(full, noprune=False)
            except Exception as exc:
                log.info("keeping build step %s: %s", image_id, exc)

    def _script(self, environment: Environment) -> tuple[str, bool]:
        """The build container's script, and whether it needs root (for apt-get)."""
        steps = ["set -e"]
        apt = environment.apt.strip()
        if apt:
            options = "-o APT::Sandbox::User=root"
            if self.settings.ca_bundle:
                options += f" -o Acquire::https::CAInfo={CA_MOUNT}"
            steps += [
                "export DEBIAN_FRONTEND=noninteractive",
                f"apt-get {options} update -q",
                f"apt-get {options} install -y -q --no-install-recommends "
                f"$(cat {FILES_MOUNT}/{APT})",
                "apt-get clean",
                "rm -rf /var/lib/apt/lists/*",
            ]
        if environment.requirements.strip():
            pip = [
                "python3",
                "-m",
                "pip",
                "install",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
                *self.settings.pip_arguments(),
                "-r",
                f"{FILES_MOUNT}/{REQUIREMENTS}",
            ]
            command = shlex.join(pip)
            if apt:  # from root down to nobody, with no capability left
                command = (
                    f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups "
                    f"env HOME=/tmp {command}"
                )
            steps.append(command)
        return "\n".join(steps), bool(apt)

    def _install(
        self,
        environment: Environment,
        start_from: str,
        files: Path,
        say: Say,
        labels: dict[str, str],
        repository: str,
        version: str,
    ) -> None:
        _, as_root = self._script(environment)
        # Mounts, not volumes: the committed image must declare no volume of them.
        Mount = self.docker.types.Mount
        mounts = [Mount(FILES_MOUNT, str(files), type="bind", read_only=True)]
        for path in self.settings.local_folders():
            mounts.append(Mount(path, path, type="bind", read_only=True))
        if self.settings.ca_bundle:
            mounts.append(Mount(CA_MOUNT, self.settings.ca_bundle, type="bind", read_only=True))
        container = None
        lines: deque[str] = deque(maxlen=50)
        try:
            container = self.client.containers.create(
                image=start_from,
                command=["sh", f"{FILES_MOUNT}/{SCRIPT}"],
                name=f"{self._container_prefix}{environment.digest[:16]}",
                user="0:0" if as_root else f"{NOBODY}:{NOBODY}",
                environment={"HOME": "/tmp"},
                cap_drop=["ALL"],
                cap_add=APT_CAPABILITIES if as_root else None,
                security_opt=["no-new-privileges"],
                network_mode=self.network,
                mounts=mounts,
                mem_limit=f"{self.memory_mb}m",
                memswap_limit=f"{self.memory_mb}m",
                pids_limit=4096,
                detach=True,
            )
            container.start()
            # A build that hangs (a package index that never answers) is killed.
            killed = threading.Event()

            def kill(container: Any = container) -> None:
                killed.set()
                container.kill()

            timer = threading.Timer(self.timeout_s, kill)
            timer.daemon = True
            timer.start()
            pending = b""
            try:
                for chunk in container.logs(stream=True, follow=True):
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        line = raw.decode("utf-8", errors="replace").rstrip("\r")
                        lines.append(line)
                        say(line)
            finally:
                timer.cancel()
            if pending:
                lines.append(pending.decode("utf-8", errors="replace"))
                say(lines[-1])
            if killed.is_set():
                raise BuildFailed(environment.tag, f"it took more than {self.timeout_s:g} s", lines)
            state = container.wait(timeout=60)
            code = int(state.get("StatusCode", 1))
            container.reload()
            if container.attrs.get("State", {}).get("OOMKilled"):
                raise BuildFailed(
                    environment.tag, f"it needed more than {self.memory_mb} MiB of memory", lines
                )
            if code != 0:
                raise BuildFailed(environment.tag, f"the install exited with code {code}", lines)
            container.commit(
                repository=repository,
                tag=version,
                changes=['CMD ["python3"]', "USER root", "ENV HOME=/tmp"],
                conf={"Labels": labels},
            )
        except self.docker.errors.APIError as exc:
            raise BuildFailed(
                environment.tag, f"Docker refused it: {exc.explanation or exc}", lines
            ) from None
        finally:
            if container is not None:
                try:
                    container.remove(force=True)
                except Exception as exc:
                    log.warning("could not remove the build container: %s", exc)

    # What this node holds --------------------------------------------------------------

    def held(self) -> list[dict[str, Any]]:
        """Each environment image here: tag, size of its own layers, last use, whether a
        container (running or not yet removed) uses it or a session is about to."""
        in_use = self._images_in_use()
        protected = self._protected()
        rows = []
        for image in self.client.images.list(name=ENV_REPOSITORY):
            for tag in image.tags:
                if not tag.startswith(f"{ENV_REPOSITORY}:"):
                    continue
                entry = self._used.get(tag, {})
                created = image.attrs.get("Created", "")
                last_used = entry.get("last_used")
                rows.append(
                    {
                        "tag": tag,
                        "size_bytes": int(entry.get("size", image.attrs.get("Size", 0))),
                        "last_used_at": (
                            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last_used))
                            if last_used
                            else created[:19] + "Z"
                            if created
                            else ""
                        ),
                        "in_use": image.id in in_use or tag in protected,
                        "_last_used": last_used or 0.0,
                        "_id": image.id,
                    }
                )
        return sorted(rows, key=lambda row: row["tag"])

    def _images_in_use(self) -> set[str]:
        return {
            container.attrs.get("ImageID", "")
            for container in self.client.containers.list(all=True, sparse=True, ignore_removed=True)
        }

    def evict(self) -> list[str]:
        """Remove the least recently used environment images beyond the disk budget,
        never one a container uses, a build is making, or a session is about to use.
        Returns the tags removed."""
        if self.budget_bytes is None:
            return []
        removed = []
        rows = sorted(self.held(), key=lambda row: row["_last_used"])
        total = sum(row["size_bytes"] for row in rows)
        for row in rows:
            if total <= self.budget_bytes:
                break
            if row["in_use"]:
                continue
            lock = self._lock_for(row["tag"])
            if not lock.acquire(blocking=False):  # a session is making sure of it now
                continue
            try:
                # Checked again under the tag's lock: no session can take it meanwhile.
                if row["tag"] in self._protected() or row["_id"] in self._images_in_use():
                    continue
                self.client.images.remove(row["tag"], noprune=False)
            except Exception as exc:
                log.warning("could not evict %s: %s", row["tag"], exc)
                continue
            finally:
                lock.release()
            total -= row["size_bytes"]
            removed.append(row["tag"])
            with self._guard:
                self._used.pop(row["tag"], None)
                self._save()
            log.info("evicted the environment image %s", row["tag"])
        return removed
