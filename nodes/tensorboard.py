"""TensorBoard, with no code change: the scalars a session writes as TensorBoard event
files (`torch.utils.tensorboard.SummaryWriter`, `tf.summary`) under its working or
output folder are read by the agent as the files grow, with TensorBoard's own event-file
loader, and stored as if reported through `sdk.report`.

The files are the session's, and the agent may be root: each is opened one path
component at a time without following links (a session cannot make the agent read what
a link points at), must be a plain file, and is then read through `/proc/self/fd`, so
renaming things afterwards changes nothing. What a poll read is sent unnumbered: the
session's numbered stream is its SDK's, which these must not interleave.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PATTERN = "events.out.tfevents."
MAX_FILES = 64
MAX_DEPTH = 6


def open_inside(root: Path, relative: Path) -> int | None:
    """A descriptor of the plain file `root/relative`, reached without following any
    link; None when it is not one."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        directory = os.open(root, flags | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for part in relative.parts[:-1]:
            following = os.open(part, flags | os.O_DIRECTORY, dir_fd=directory)
            os.close(directory)
            directory = following
        descriptor = os.open(relative.parts[-1], flags | os.O_NONBLOCK, dir_fd=directory)
    except OSError:
        return None
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        return None
    return descriptor


def _event_files(root: Path) -> list[Path]:
    """Event files under `root` (not through links), relative to it, shallowest first."""
    found: list[Path] = []
    for folder, directories, files in os.walk(root, followlinks=False):
        depth = len(Path(folder).relative_to(root).parts)
        if depth >= MAX_DEPTH:
            directories.clear()
        for name in files:
            if name.startswith(PATTERN):
                found.append(Path(folder, name).relative_to(root))
        if len(found) >= MAX_FILES:
            break
    return sorted(found, key=lambda p: (len(p.parts), str(p)))[:MAX_FILES]


class TensorBoardTail:
    """Follows a session's event files; `poll()` sends what they gained."""

    def __init__(self, roots: list[Path], send: Callable[[dict[str, Any]], None]):
        self.roots = roots
        self.send = send
        self._loaders: dict[tuple[Path, Path], Any] = {}
        self._descriptors: list[int] = []
        self._shallowest: dict[Path, int] = {}

    def _loader(self, root: Path, relative: Path) -> Any | None:
        key = (root, relative)
        if key not in self._loaders:
            from tensorboard.backend.event_processing.event_file_loader import (
                EventFileLoader,
            )

            descriptor = open_inside(root, relative)
            if descriptor is None:
                return None
            self._descriptors.append(descriptor)
            self._loaders[key] = EventFileLoader(f"/proc/self/fd/{descriptor}")
        return self._loaders[key]

    def _tag(self, root: Path, relative: Path, tag: str) -> str:
        """A file in a deeper folder than the first ones (SummaryWriter.add_scalars
        writes one per line) names its tags after its folder: `grp_x/grp`."""
        shallowest = self._shallowest.setdefault(root, len(relative.parts))
        if len(relative.parts) <= shallowest:
            return tag
        return f"{'/'.join(relative.parts[shallowest - 1 : -1])}/{tag}"

    def poll(self) -> int:
        """Read what the files gained since the last poll and send it; the points sent."""
        from tensorboard.util import tensor_util

        sent = 0
        for root in self.roots:
            for relative in _event_files(root):
                loader = self._loader(root, relative)
                if loader is None:
                    continue
                columns: dict[str, dict[str, list]] = {}
                try:
                    for event in loader.Load():
                        for value in event.summary.value:
                            if value.metadata.plugin_data.plugin_name not in ("scalars", ""):
                                continue
                            if value.HasField("simple_value"):
                                number = float(value.simple_value)
                            elif value.HasField("tensor"):
                                array = tensor_util.make_ndarray(value.tensor)
                                if array.size != 1:
                                    continue
                                number = float(array.reshape(-1)[0])
                            else:
                                continue
                            if number != number or number in (float("inf"), float("-inf")):
                                continue
                            tag = self._tag(root, relative, value.tag)[:128]
                            column = columns.setdefault(
                                tag, {"step": [], "value": [], "wall_time": []}
                            )
                            column["step"].append(int(event.step))
                            column["value"].append(number)
                            column["wall_time"].append(float(event.wall_time))
                except Exception as exc:  # a torn or hostile file: skip what is unreadable
                    log.warning("reading %s: %s", relative, exc)
                if not columns:
                    continue
                self.send({"scalars": columns})
                sent += sum(len(c["step"]) for c in columns.values())
        return sent

    def close(self) -> None:
        for descriptor in self._descriptors:
            with contextlib.suppress(OSError):
                os.close(descriptor)
        self._descriptors.clear()
        self._loaders.clear()


class TensorBoardFollower:
    """Polls a session's event files every `interval` seconds on a thread of its own;
    `finish()` reads them a last time (before the session's end is reported)."""

    def __init__(self, tail: TensorBoardTail, interval: float = 1.0):
        self.tail = tail
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tensorboard", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tail.poll()
            except Exception as exc:
                log.warning("following TensorBoard files failed: %s", exc)

    def finish(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            self.tail.poll()
        except Exception as exc:
            log.warning("reading TensorBoard files failed: %s", exc)
        self.tail.close()
