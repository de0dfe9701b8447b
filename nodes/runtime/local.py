"""Local processes: trusted users' code on the agent's own machine, never as root.

An agent running as root starts each session as an unprivileged user of its own (a uid
from `SESSION_UIDS`, one per running session, with no supplementary groups), owning
only the session's folders: it cannot read the agent's environment or memory
(`/proc/PID/environ` of another user's process is closed to it), nor the instance's
files, nor another session's. When the session ends its folders are handed back to
the agent, so the next session given the same uid finds nothing of it. An agent that is
not root cannot change users: it registers the users it runs sessions for (its
operators), and the scheduler places nobody else's code there.

Each session gets its own process group (so a stop reaches every process it started),
a working directory holding its unpacked code, `CUDA_VISIBLE_DEVICES` set to its
GPUs, and a memory limit. The limit is enforced by the agent, which sums the resident
memory of the whole process tree every tenth of a second and kills the group when it
goes over (proportional set sizes where it has several processes, so pages shared
after a fork count once): a process killed that way is reported as out of memory, unlike a Python
`MemoryError` from an address-space rlimit, which reads like any other crash.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import stat
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from nodes.runtime.base import ExitInfo, Run, RunSpec, Runtime, gpu_environment, remaining

PR_SET_PDEATHSIG = 1
MAX_LINE = 16 * 1024
# Unprivileged uids (and gids) for sessions, one per running session; no account needs
# to exist for them. PODIUM_NODE_SESSION_UIDS=FIRST-LAST moves the range.
SESSION_UIDS = range(62000, 63000)


def session_uid_range(text: str | None) -> range:
    if not text:
        return SESSION_UIDS
    first, _, last = text.partition("-")
    uids = range(int(first), int(last) + 1)
    if not uids or uids.start < 1000:
        raise ValueError("session uids are a range FIRST-LAST above 999")
    return uids


class SessionUsers:
    """Hands out one uid per running session, from a range."""

    def __init__(self, uids: range):
        self.uids = uids
        self._taken: set[int] = set()
        self._lock = threading.Lock()

    def acquire(self) -> int:
        with self._lock:
            uid = next((u for u in self.uids if u not in self._taken), None)
            if uid is None:
                raise RuntimeError("every session uid of this node is in use")
            self._taken.add(uid)
        try:
            end_processes_of({uid})  # nothing of an earlier holder may wait for this one
        except BaseException:
            self.release(uid)
            raise
        return uid

    def release(self, uid: int) -> None:
        with self._lock:
            self._taken.discard(uid)


def closed_to_others(path: Path) -> Path | None:
    """The first folder on the way to `path` that other users may not pass through (or
    `path` itself, when they may not read it), or None when they reach it."""
    resolved = path.resolve()
    for folder in [*reversed(path.absolute().parents), *reversed(resolved.parents)]:
        if not folder.stat().st_mode & stat.S_IXOTH:
            return folder
    mode = resolved.stat().st_mode
    needed = stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH
    return None if mode & needed else resolved


def hand_over(folder: Path, uid: int) -> None:
    """Give a folder and everything in it to `uid` (links are not followed)."""
    for root, dirs, files in os.walk(folder):
        os.chown(root, uid, uid, follow_symlinks=False)
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


def end_processes_of(uids: range | set[int]) -> None:
    """Kill every process running as one of `uids`, again and again until none is left
    (a process may fork while the previous round kills)."""
    for _ in range(100):
        alive = []
        for process in psutil.process_iter(["uids", "status"]):
            with contextlib.suppress(psutil.Error):
                ids = process.info["uids"]
                if process.info["status"] == psutil.STATUS_ZOMBIE:
                    continue  # dead already: only its exit status is left to collect
                if ids and (ids.real in uids or ids.effective in uids):
                    alive.append(process)
        if not alive:
            return
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        time.sleep(0.01)
    raise RuntimeError(f"processes of session users {uids} outlive every kill")


def _pdeathsig_setter():
    """A function for the child, between fork and exec, that asks the kernel to kill it
    when the agent dies, so no session outlives a crashed agent. libc is resolved here in
    the parent: loading a library after fork could deadlock on a lock another thread held."""
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None

    def set_pdeathsig() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return set_pdeathsig


class LocalRun(Run):
    def __init__(self, spec: RunSpec, process: subprocess.Popen[bytes], uid: int | None = None):
        self.spec = spec
        self.process = process
        self.uid = uid  # the session's own user, when the agent could switch to one
        self.out_of_memory = False
        self.timed_out = False
        self.started = time.monotonic()
        self.started_at = time.time()

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> Iterator[str]:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            yield raw[:MAX_LINE].decode("utf-8", errors="replace").rstrip("\r\n")

    def wait(self) -> ExitInfo:
        # Several threads may wait (the agent's monitor, its straggler reaper): the time
        # limit is enforced once and remembered on the run.
        try:
            code = self.process.wait(timeout=remaining(self.spec, self.started))
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self.kill()
            code = self.process.wait()
        return ExitInfo(exit_code=code, out_of_memory=self.out_of_memory, timed_out=self.timed_out)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def stop(self, grace_seconds: float) -> None:
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            self.kill()
        # Children that ignored SIGTERM may outlive the leader.
        self._signal_group(signal.SIGKILL)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def exec(self, command: list[str], timeout: float) -> tuple[int, str]:
        env = dict(self.spec.env, **gpu_environment(self.spec, self.spec.gpu_indices))
        try:
            done = subprocess.run(
                command,
                cwd=self.spec.code_dir,
                env=env,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # As the session's own user: `podium exec` is no way around it.
                **_as_user(self.uid),
            )
        except FileNotFoundError:
            return 127, f"{command[0]}: command not found\n"
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode("utf-8", errors="replace")
            return 124, output + f"\n(stopped after {timeout:g} s)\n"
        return done.returncode, done.stdout.decode("utf-8", errors="replace")

    def usage(self) -> tuple[float, float] | None:
        try:
            leader = psutil.Process(self.process.pid)
            tree = [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return None
        seconds = 0.0
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = process.cpu_times()
                seconds += times.user + times.system
        return seconds, self.resident_mb()

    def request_checkpoint(self) -> None:
        # The main process only: a worker it forked may not handle the signal, and
        # SIGUSR1's default is to end the process.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGUSR1)

    def pids(self) -> set[int]:
        try:
            leader = psutil.Process(self.process.pid)
            return {leader.pid, *(child.pid for child in leader.children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()

    def resident_mb(self) -> float:
        """Memory the session's processes hold. One process: its resident set. Several
        (data-loader workers, say): their proportional sets, so that pages they share
        after a fork count once, not once per process."""
        try:
            leader = psutil.Process(self.process.pid)
            tree = [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0
        for process in tree:
            try:
                if len(tree) == 1:
                    total += process.memory_info().rss
                else:
                    total += process.memory_full_info().pss
            except psutil.NoSuchProcess:
                continue
            except psutil.AccessDenied:
                total += process.memory_info().rss
        return total / (1024 * 1024)


def _as_user(uid: int | None) -> dict:
    """subprocess's arguments that start a process as `uid`, with no other groups."""
    if uid is None:
        return {}
    return {"user": uid, "group": uid, "extra_groups": []}


class LocalRuntime(Runtime):
    name = "local"

    def __init__(self, node: str = "", session_uids: range | None = None) -> None:
        super().__init__(node)
        # PR_SET_PDEATHSIG is set after the switch of user, which would clear it.
        self._preexec = _pdeathsig_setter()
        self.users = SessionUsers(session_uids or SESSION_UIDS) if os.geteuid() == 0 else None

    @property
    def isolates_from_agent(self) -> bool:
        """Do sessions run as users other than the agent's?"""
        return self.users is not None

    def check_reachable(self, workdir: Path) -> None:
        """Sessions run as other users: they must reach the interpreter, its library and
        their folders. Say so now rather than fail every session."""
        if self.users is None:
            return
        sdk = importlib.util.find_spec("cli")
        needed_paths = [
            Path(sys.executable),
            Path(os.__file__),
            Path(sysconfig.get_paths()["purelib"]),
            workdir / "sessions",
        ]
        if sdk is not None and sdk.origin:
            needed_paths.append(Path(sdk.origin))
        for needed in needed_paths:
            closed = closed_to_others(needed)
            if closed is not None:
                raise RuntimeError(
                    f"sessions run as unprivileged users, who cannot reach {needed}: "
                    f"{closed} is closed to them (chmod o+x on folders, o+r on files)"
                )

    def start(self, spec: RunSpec) -> LocalRun:
        env = dict(spec.env)
        env.update(gpu_environment(spec, spec.gpu_indices))
        # NVML numbers GPUs by PCI bus; CUDA's default order may differ on mixed hosts.
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["PYTHONUNBUFFERED"] = "1"
        uid = self._claim_folders(spec, env)
        try:
            process = subprocess.Popen(
                [sys.executable, "-u", spec.entry, *spec.args],
                cwd=spec.code_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self._preexec,
                **_as_user(uid),
            )
        except BaseException:
            self._release(spec, uid)
            raise
        return LocalRun(spec, process, uid)

    def _claim_folders(self, spec: RunSpec, env: dict[str, str]) -> int | None:
        """As root: a uid for the session, owning its code, output, inputs and home, in
        a session folder others may pass through but not list."""
        if self.users is None:
            return None
        uid = self.users.acquire()
        session_dir = spec.code_dir.parent
        home = session_dir / "home"
        home.mkdir(exist_ok=True)
        env["HOME"] = str(home)
        for folder in (spec.code_dir, spec.output_dir, home, spec.inputs):
            if folder is not None and folder.exists():
                hand_over(folder, uid)
                folder.chmod(0o700)
        session_dir.chmod(0o711)
        if (session_dir / "datasets").exists():
            (session_dir / "datasets").chmod(0o755)  # its links, by mount name
        return uid

    def _release(self, spec: RunSpec, uid: int | None) -> None:
        if uid is None or self.users is None:
            return
        # Whatever still runs as this uid (a process that left the session's group) ends
        # with it, and its folders go back to the agent: the next session given this
        # uid must find nothing of this one.
        end_processes_of({uid})
        hand_over(spec.code_dir.parent, os.geteuid())
        self.users.release(uid)

    def reclaim(self, workdir: Path) -> None:
        """At the agent's start: what sessions of a crashed agent left behind (processes
        running as session users, folders they own) goes, or back to the agent."""
        if self.users is None:
            return
        end_processes_of(self.users.uids)
        for session_dir in (workdir / "sessions").iterdir():
            if session_dir.is_dir() and not session_dir.is_symlink():
                hand_over(session_dir, os.geteuid())

    def finished(self, run: Run) -> None:
        assert isinstance(run, LocalRun)
        self._release(run.spec, run.uid)

    def check_memory(self, run: Run) -> bool:
        assert isinstance(run, LocalRun)
        if run.process.poll() is not None or run.out_of_memory:
            return False
        if run.resident_mb() > run.spec.memory_mb:
            run.out_of_memory = True
            run.kill()
            return True
        return False
