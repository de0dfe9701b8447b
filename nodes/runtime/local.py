"""Local processes: trusted code on the agent's own machine, as the agent's own user.

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
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil

from nodes.runtime.base import ExitInfo, Run, RunSpec, Runtime, remaining

PR_SET_PDEATHSIG = 1
MAX_LINE = 16 * 1024


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
    def __init__(self, spec: RunSpec, process: subprocess.Popen[bytes]):
        self.spec = spec
        self.process = process
        self.out_of_memory = False
        self.timed_out = False
        self.started = time.monotonic()

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
        env = dict(self.spec.env, CUDA_VISIBLE_DEVICES=",".join(map(str, self.spec.gpu_indices)))
        try:
            done = subprocess.run(
                command,
                cwd=self.spec.code_dir,
                env=env,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        except FileNotFoundError:
            return 127, f"{command[0]}: command not found\n"
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode("utf-8", errors="replace")
            return 124, output + f"\n(stopped after {timeout:g} s)\n"
        return done.returncode, done.stdout.decode("utf-8", errors="replace")

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


class LocalRuntime(Runtime):
    name = "local"

    def __init__(self, node: str = "") -> None:
        super().__init__(node)
        self._preexec = _pdeathsig_setter()

    def start(self, spec: RunSpec) -> LocalRun:
        env = dict(spec.env)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in spec.gpu_indices)
        # NVML numbers GPUs by PCI bus; CUDA's default order may differ on mixed hosts.
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["PYTHONUNBUFFERED"] = "1"
        process = subprocess.Popen(
            [sys.executable, "-u", spec.entry, *spec.args],
            cwd=spec.code_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self._preexec,
        )
        return LocalRun(spec, process)

    def check_memory(self, run: Run) -> bool:
        assert isinstance(run, LocalRun)
        if run.process.poll() is not None or run.out_of_memory:
            return False
        if run.resident_mb() > run.spec.memory_mb:
            run.out_of_memory = True
            run.kill()
            return True
        return False
