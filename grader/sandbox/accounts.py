"""The uids the `user` sandbox runs scorers as: one per run at a time, and nothing left
running under it once the run is over.

Two scorers under one uid could read each other's folders, so a run holds a lock on its
uid; a scorer's leftover process could wait for the next scorer's labels, so every
process of the uid is killed before the lock is let go. The uid is the scorer's alone,
which is what makes "every process of the uid" safe to kill.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from grader.sandbox.base import SandboxError

log = logging.getLogger(__name__)

SLOTS = 16  # graders on one host that may run a scorer at the same moment


@contextmanager
def claim(first_uid: int, first_gid: int) -> Iterator[tuple[int, int]]:
    """(uid, gid) of a free slot, held until the block ends."""
    folder = _lock_folder()
    for slot in range(SLOTS):
        uid, gid = first_uid + slot, first_gid + slot
        with (folder / f"{uid}.lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            end_every_process_of(uid)  # from a grader that died during its run
            try:
                yield uid, gid
            finally:
                end_every_process_of(uid)
            return
    raise SandboxError(f"all {SLOTS} scorer uids from {first_uid} are busy")


def end_every_process_of(uid: int) -> None:
    # Killed again until none is left: one may have forked while the others died.
    for _ in range(100):
        alive = _processes_of(uid)
        if not alive:
            return
        for pid in alive:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    raise SandboxError(f"processes of scorer uid {uid} outlive every kill: {alive[:5]}")


def _processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        zombie = fields.get("State", "").split()[:1] == ["Z"]
        if str(uid) in fields.get("Uid", "").split() and not zombie:
            found.append(int(entry.name))
    return found


def _lock_folder() -> Path:
    """Root's own folder: a lock file a scorer could create first would be its to hold."""
    base = Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())
    folder = base / "podium-scorers"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise SandboxError(f"{folder} is not a folder only the grader's user can write")
    return folder
