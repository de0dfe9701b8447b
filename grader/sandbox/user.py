"""The `user` sandbox, for a grader that runs as root without Docker: the scorer runs in
a network namespace of its own (no interface but a loopback that is down) as a dedicated
unprivileged user, in a 0700 folder only it owns.

Another uid cannot read a root process's `/proc/PID/environ` or the grader's 0600 key and
database, nor signal or trace the grader. Each run takes one of `SLOTS` uids from
`PODIUM_SCORER_UID` (gid from `PODIUM_SCORER_GID`) under a lock, so that two graders on
one host never share one; every process left under that uid is killed after the run, so
nothing a scorer starts waits for the next round's labels. The system's `python3`
(`PODIUM_SCORER_PYTHON`) runs it: the grader's own interpreter may live where that user
cannot read, and its packages are not the scorer's to use.
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from grader.sandbox import accounts
from grader.sandbox.base import Limits, Outcome, Sandbox, SandboxError, SandboxUnavailable

CLONE_NEWNET = 0x40000000
PR_SET_NO_NEW_PRIVS = 38
DEFAULT_ID = 64999
DEFAULT_PYTHON = "/usr/bin/python3"
ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
OUTPUT_BYTES = 64 * 1024  # what is kept of a scorer's output: its last line is all we show


def running_as_root() -> bool:
    return os.geteuid() == 0


class UserSandbox(Sandbox):
    name = "user"

    def __init__(self) -> None:
        self.uid = int(os.environ.get("PODIUM_SCORER_UID", DEFAULT_ID))
        self.gid = int(os.environ.get("PODIUM_SCORER_GID", DEFAULT_ID))
        self.python = os.environ.get("PODIUM_SCORER_PYTHON", DEFAULT_PYTHON)

    def check(self) -> None:
        if not running_as_root():
            raise SandboxUnavailable("the grader does not run as root")
        if not os.path.isfile(self.python):
            raise SandboxUnavailable(f"no {self.python} to run scorers with")
        # Namespaces may be refused (a container without CAP_SYS_ADMIN), and the interpreter
        # may be out of the scorer user's reach: one trivial run finds out.
        try:
            probe = self.run("pass", {}, Limits(cpu_s=10, memory_bytes=512 * 1024**2))
        except SandboxError as exc:
            raise SandboxUnavailable(str(exc)) from None
        if probe.exit_code != 0:
            last = probe.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
            raise SandboxUnavailable(f"{self.python} does not run as uid {self.uid}: {last[-1]}")

    def run(self, runner: str, files: Mapping[str, bytes], limits: Limits) -> Outcome:
        with (
            accounts.claim(self.uid, self.gid) as (uid, gid),
            tempfile.TemporaryDirectory(prefix="podium-scorer-") as folder,
        ):
            # The captured output sits beside the work folder, in the grader's own 0700
            # folder: the scorer, started inside `work`, never reaches it.
            private = Path(folder)
            work = private / "work"
            work.mkdir(mode=0o700)
            for name, data in files.items():
                (work / name).write_bytes(data)
            for path in (work, *work.iterdir()):
                os.chown(path, uid, gid)
            with (private / "stdout").open("w+b") as out, (private / "stderr").open("w+b") as err:
                timed_out = False
                try:
                    process = subprocess.Popen(
                        [self.python, "-I", "-c", runner],
                        cwd=work,
                        env=ENVIRONMENT,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        close_fds=True,  # not the grader's database, Redis or key
                        umask=0o077,
                        preexec_fn=_isolation(uid, gid, limits),
                    )
                except (OSError, subprocess.SubprocessError) as exc:
                    raise SandboxError(f"the scorer could not be isolated: {exc}") from None
                try:
                    code = process.wait(timeout=limits.wall_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    process.kill()
                    code = process.wait()
                finally:
                    accounts.end_every_process_of(uid)
                return Outcome(code, _tail(out), _tail(err), timed_out=timed_out)


def _isolation(uid: int, gid: int, limits: Limits) -> Callable[[], None]:
    """The child's last steps before it runs the scorer, in this order: the namespace
    needs root, so it comes before the credentials are dropped."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here, not in the forked child

    def checked(result: int) -> None:
        if result != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))

    def isolate() -> None:
        os.setsid()
        for kind, soft, hard in (
            (resource.RLIMIT_CPU, limits.cpu_s, limits.cpu_s + 1),  # SIGXCPU, then SIGKILL
            (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
            (resource.RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes),
            (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
            (resource.RLIMIT_NPROC, limits.processes, limits.processes),
            (resource.RLIMIT_CORE, 0, 0),
        ):
            resource.setrlimit(kind, (soft, hard))
        checked(libc.unshare(CLONE_NEWNET))
        checked(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))  # setuid files stay inert
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)

    return isolate


def _tail(stream: IO[bytes]) -> bytes:
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - OUTPUT_BYTES))
    return stream.read()
