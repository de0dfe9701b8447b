"""The node agent: registration, heartbeats, session starts and stops, log shipping."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from cli.archive import SESSION_ARCHIVE_BYTES, SESSION_ARCHIVE_FILES, unpack
from nodes.cache import DatasetCache
from nodes.client import PortalClient, PortalError
from nodes.monitor import ResourceMonitor
from nodes.probe import ResourceProbe
from nodes.runtime import ExitInfo, Run, RunSpec, Runtime
from nodes.runtime.environments import BuildFailed
from nodes.tensorboard import TensorBoardFollower, TensorBoardTail

log = logging.getLogger(__name__)

# What a session inherits of the agent's environment: the basics a program needs, and
# nothing else (the agent's shell may hold credentials).
INHERITED_ENVIRONMENT = {
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TERM",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
    "CUDA_HOME",
    "CUDA_PATH",
    "NVIDIA_DRIVER_CAPABILITIES",
    "NVIDIA_VISIBLE_DEVICES",
}
MAX_PREDICTIONS_BYTES = 512 * 2**20


def read_session_file(path: Path, limit: int = MAX_PREDICTIONS_BYTES) -> bytes | None:
    """A file the session wrote, read by the agent (which may be root): only a plain
    file of the session's own, never what a link points at (a session that links its
    predictions to the agent's node token would get it back in an error message)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as opened:
        status = os.fstat(opened.fileno())
        if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1 or status.st_size > limit:
            log.warning("%s is not a plain file the session wrote: not read", path)
            return None
        return opened.read(limit + 1)[:limit]


def deliver(send: Callable[[], object], what: str, attempts: int = 10) -> bool:
    """Send something to the portal, retrying (with a growing pause) what failed on the
    way or on the portal's side; what the portal refuses (4xx) is not sent again. True
    once the portal has answered (accepted or refused), False when it never did."""
    for attempt in range(attempts):
        try:
            send()
            return True
        except PortalError as exc:
            if exc.status is not None and exc.status < 500:
                log.warning("%s refused: %s", what, exc)
                return True
        except Exception as exc:
            log.warning("sending %s failed (%s)", what, exc)
        time.sleep(min(0.2 * 2**attempt, 5))
    return False


@dataclass
class Tracked:
    run: Run
    threads: list[threading.Thread] = field(default_factory=list)
    stop_requested: bool = False


class LogShipper:
    """Collects a session's lines and ships them in small batches, numbered so that a
    retried batch is stored once. The first line goes out at once."""

    def __init__(self, client: PortalClient, session_id: int, interval: float = 0.1):
        self.client = client
        self.session_id = session_id
        self.interval = interval
        self._pending: list[dict] = []
        self._next_seq = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"logs-{session_id}", daemon=True)
        self._thread.start()

    def add(self, text: str) -> None:
        with self._lock:
            self._pending.append({"seq": self._next_seq, "text": text})
            self._next_seq += 1
        self._wake.set()

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending[:5000], self._pending[5000:]
        if not batch:
            return
        for attempt in range(20):
            try:
                self.client.ship_logs(self.session_id, batch)
                return
            except Exception as exc:
                log.warning("shipping logs of %s failed (%s), retrying", self.session_id, exc)
                time.sleep(min(0.1 * 2**attempt, 5))
        log.error("dropped %d log lines of session %s", len(batch), self.session_id)

    def _loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait()
            self._wake.clear()
            self._flush()
            time.sleep(self.interval)  # let the next lines gather into one batch
        self._flush()
        while self._pending:
            self._flush()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=60)


class Agent:
    def __init__(
        self,
        client: PortalClient,
        runtime: Runtime,
        probe: ResourceProbe,
        *,
        name: str,
        workdir: Path,
        cache_bytes: int = 50 * 2**30,
        heartbeat_seconds: float = 2.0,
        stop_grace_seconds: float = 10.0,
        operators: list[str] | None = None,
        monitor: ResourceMonitor | None = None,
    ):
        self.client = client
        self.runtime = runtime
        self.probe = probe
        self.name = name
        self.workdir = workdir
        self.heartbeat_seconds = heartbeat_seconds
        self.stop_grace_seconds = stop_grace_seconds
        self.operators = sorted(set(operators or []))
        self.monitor = monitor
        self.sessions: dict[int, Tracked] = {}
        # Sessions being made ready (an environment may build for minutes): whether a
        # stop was asked for meanwhile.
        self._starting: dict[int, bool] = {}
        self._claimed: dict[int, set[str]] = {}  # dataset copies given to starting sessions
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")
        self.cache = DatasetCache(workdir / "cache", cache_bytes, client.download_dataset)
        self._lock = threading.Lock()
        self._report_lock = threading.Lock()
        self._stopping = threading.Event()

    # Lifecycle ---------------------------------------------------------------------

    @property
    def _token_file(self) -> Path:
        return self.workdir / "node.token"

    def register(self, join_token: str) -> dict:
        """Register with the node token this node was given before (kept in its folder,
        readable by the agent's user only), else with the cluster's join token."""
        self.reap_orphans()
        self.adopt()
        if self._token_file.is_file():
            self.client.node_token = self._token_file.read_text().strip() or None
        try:
            body = self._register(join_token)
        except PortalError as exc:
            if exc.status == 401 and self.client.node_token:
                # Removed by an administrator: it stays out until someone decides to
                # let it join again, as a new node.
                raise SystemExit(
                    f"node {self.name} was removed from the cluster (`podium node rm`): "
                    f"delete {self._token_file} to join again with the join token"
                ) from exc
            raise
        # Written whole or not at all: a half-written token would lock the node out.
        partial = self._token_file.with_suffix(".partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(body["node_token"])
        os.replace(partial, self._token_file)
        log.info("registered as %s", self.name)
        return body

    def _register(self, join_token: str) -> dict:
        return self.client.register(
            join_token,
            self.name,
            os.uname().nodename,
            self.runtime.name,
            self.probe.inventory(),
            operators=self.operators,
        )

    def start_background(self) -> None:
        for target, name in (
            (self._heartbeat_loop, "heartbeat"),
            (self._memory_loop, "memory-watch"),
        ):
            threading.Thread(target=target, name=name, daemon=True).start()

    def shutdown(self, *, keep_sessions: bool = False) -> None:
        """Stop every session; the portal hears that this node stopped running them.
        With `keep_sessions` (a runtime that can adopt them, restarting), leave them
        running for the next agent to take back."""
        self._stopping.set()
        if keep_sessions:
            log.info("agent stopping: leaving %d sessions to the next agent", len(self.sessions))
            return
        with self._lock:
            tracked = list(self.sessions.items())
        for session_id, entry in tracked:
            entry.stop_requested = True
            log.info("agent stopping: ending session %s", session_id)
            entry.run.stop(grace_seconds=min(self.stop_grace_seconds, 3.0))
        for _, entry in tracked:
            for thread in entry.threads:
                thread.join(timeout=30)

    def running_ids(self) -> list[int]:
        with self._lock:
            return list(self.sessions)

    # Sessions ----------------------------------------------------------------------

    def start_session(self, session_id: int) -> bool:
        """Start a session placed here; True when it started."""
        try:
            spec = self.client.session_spec(session_id)
        except PortalError as exc:
            log.error("cannot read session %s: %s", session_id, exc)
            return False
        with self._lock:
            busy = session_id in self.sessions or session_id in self._starting
            if spec["status"] != "scheduled" or busy:
                log.info("session %s is %s; not starting it", session_id, spec["status"])
                return False
            self._starting[session_id] = False
        try:
            return self._start(session_id, spec)
        finally:
            with self._lock:
                self._starting.pop(session_id, None)
                self._claimed.pop(session_id, None)

    def _start(self, session_id: int, spec: dict) -> bool:
        refusal = self.refusal(spec)
        if refusal:
            log.warning("refusing session %s: %s", session_id, refusal)
            self._report_end(session_id, "failed", reason=refusal)
            return False
        # The shipper opens first: an environment's build shows in the session's log.
        shipper = LogShipper(self.client, session_id)
        try:
            run_spec = self.runtime.prepare(self._prepare(spec), shipper.add)
            with self._lock:
                stopped = self._starting.get(session_id, False)
            if stopped:  # `podium stop` came while its environment was building
                shipper.close()
                self._report_end(session_id, "stopped", reason="stopped on request")
                return False
            # Started from one long-lived thread: the kernel's parent-death signal,
            # which ends local sessions with a crashed agent, fires when the thread that
            # forked them ends, and start jobs run on threads that come and go.
            run = self._spawner.submit(self.runtime.start, run_spec).result()
        except BuildFailed as exc:
            log.warning("session %s: %s", session_id, exc)
            shipper.close()
            if self._report_end(session_id, "failed", reason=str(exc)):
                self._remove_folder(session_id)
            return False
        except Exception as exc:
            log.exception("session %s could not start", session_id)
            shipper.close()
            if self._report_end(session_id, "failed", reason=f"could not start: {exc}"):
                self._remove_folder(session_id)  # what was unpacked before it failed
            return False
        self._write_pid(session_id, run)
        entry = Tracked(run)
        with self._report_lock:
            with self._lock:
                self.sessions[session_id] = entry
                stopped = self._starting.get(session_id, False)
            try:
                self.client.report_state(session_id, "running")
            except Exception as exc:
                # It runs and is watched all the same (a reset connection must not orphan
                # a session): the report is tried again beside it, and the next heartbeat,
                # which lists it, marks it running too.
                log.warning("reporting that %s runs failed (%s): trying again", session_id, exc)
                threading.Thread(
                    target=deliver,
                    args=(lambda: self._report_running(session_id), f"{session_id} running", 5),
                    daemon=True,
                ).start()
        self._watch(session_id, entry, shipper)
        if stopped:  # asked to stop while it started: the stop found no entry yet
            self.stop_session(session_id)
        return True

    def _report_running(self, session_id: int) -> None:
        with self._report_lock:
            if session_id in self.sessions:  # not once its end is reported
                self.client.report_state(session_id, "running")

    def refusal(self, spec: dict) -> str | None:
        """Why this node will not run a session's code, or None. The scheduler does not
        place such work here; this is the node's own check of what it was sent."""
        isolating = self.runtime.name == "docker"
        if not isolating and not spec.get("trusted", False):
            return (
                f"node {self.name} runs sessions as local processes, which only trusted "
                "users' code may use: it needs a node with the Docker runtime"
            )
        if self.operators and spec.get("owner") not in self.operators:
            return f"node {self.name} runs only its operators' sessions"
        return None

    def adopt(self) -> None:
        """Take back the sessions a previous agent left running (the Docker runtime's
        containers); the first heartbeat lists them, so the portal keeps them running."""
        for session_id, run in self.runtime.adopt().items():
            log.info("adopting the running session %s", session_id)
            entry = Tracked(run)
            with self._lock:
                self.sessions[session_id] = entry
            self._watch(session_id, entry, LogShipper(self.client, session_id))

    def _watch(self, session_id: int, entry: Tracked, shipper: LogShipper) -> None:
        monitor = threading.Thread(
            target=self._monitor,
            args=(session_id, entry, shipper),
            name=f"session-{session_id}",
            daemon=True,
        )
        entry.threads.append(monitor)
        monitor.start()

    def stop_session(self, session_id: int) -> None:
        with self._lock:
            entry = self.sessions.get(session_id)
            if entry is None and session_id in self._starting:
                self._starting[session_id] = True
                log.info("stop of %s: it stops before it starts", session_id)
                return
        if entry is None:
            log.info("stop of %s: not running here", session_id)
            return
        entry.stop_requested = True
        threading.Thread(
            target=entry.run.stop, args=(self.stop_grace_seconds,), daemon=True
        ).start()

    def checkpoint_session(self, session_id: int) -> dict:
        """Ask a running session to checkpoint (SIGUSR1: the SDK calls its bound `save`)."""
        with self._lock:
            entry = self.sessions.get(session_id)
        if entry is None:
            return {"error": "it does not run on this node"}
        entry.run.request_checkpoint()
        return {}

    def exec_in_session(self, session_id: int, command: list[str], timeout: float = 60.0) -> dict:
        with self._lock:
            entry = self.sessions.get(session_id)
        if entry is None:
            return {"exit_code": None, "output": "", "error": "it does not run on this node"}
        code, output = entry.run.exec(command, timeout)
        return {"exit_code": code, "output": output[-1_000_000:], "error": None}

    def _prepare(self, spec: dict) -> RunSpec:
        session_dir = self.workdir / "sessions" / str(spec["session_id"])
        shutil.rmtree(session_dir, ignore_errors=True)
        code_dir, output_dir = session_dir / "code", session_dir / "output"
        code_dir.mkdir(parents=True)
        output_dir.mkdir()
        (session_dir / "datasets").mkdir()
        datasets = self._datasets(spec)
        for mount, path in datasets.items():
            (session_dir / "datasets" / mount).symlink_to(path, target_is_directory=True)
        archive = session_dir / "code.tar.gz"
        self.client.download_code(spec["code_digest"], archive)
        unpack(
            archive, code_dir, max_bytes=SESSION_ARCHIVE_BYTES, max_members=SESSION_ARCHIVE_FILES
        )
        archive.unlink()
        if not (code_dir / spec["entry"]).is_file():
            raise FileNotFoundError(f"the entry point {spec['entry']} is not in the code")
        grading = spec.get("grading")
        inputs = self._grading_inputs(spec["session_id"], grading, session_dir) if grading else None
        env = {
            k: v for k, v in os.environ.items() if k in INHERITED_ENVIRONMENT or k.startswith("LC_")
        }
        env.update(
            {
                "PODIUM_SESSION": spec["ident"],
                "PODIUM_API": spec["api_url"],
                "PODIUM_TOKEN": spec["token"],
                "PODIUM_OUTPUT": str(output_dir),
                "PODIUM_DATASET_PATH": str(session_dir / "datasets"),
                "PODIUM_NODE": self.name,
                "PODIUM_RESUME": spec.get("resume", ""),
            }
        )
        if inputs is not None:
            # The SDK sees these and, at `sdk.bind`, restores the checkpoint, predicts
            # and writes output/predictions.csv instead of training.
            env.update(PODIUM_MODE="grade", PODIUM_INPUTS=str(inputs))
        elif spec.get("mode") in ("serve", "infer"):
            # At `sdk.bind` the SDK restores PODIUM_RESUME and answers a server's
            # requests, or predicts the session's input, instead of training.
            env.update(PODIUM_MODE=spec["mode"])
        return RunSpec(
            session_id=spec["session_id"],
            ident=spec["ident"],
            entry=spec["entry"],
            args=spec["args"],
            code_dir=code_dir,
            output_dir=output_dir,
            gpu_indices=spec["gpu_indices"],
            gpu_share=spec.get("gpu_share"),
            cpus=spec["cpus"],
            memory_mb=spec["memory_mb"],
            image=spec["image"],
            env=env,
            datasets=datasets,
            grading=inputs is not None,
            inputs=inputs,
            time_limit_s=float(grading["time_limit_s"]) if grading else None,
            trusted=bool(spec.get("trusted", False)),
            environment=spec.get("environment") or "",
        )

    def _grading_inputs(self, session_id: int, grading: dict, session_dir: Path) -> Path:
        """inputs/test.csv (the hidden test inputs) and inputs/checkpoint/ (the model)."""
        inputs = session_dir / "inputs"
        (inputs / "checkpoint").mkdir(parents=True)
        self.client.download_inputs(session_id, inputs / "test.csv")
        archive = session_dir / "checkpoint.tar.gz"
        self.client.download_code(grading["checkpoint_digest"], archive)
        unpack(
            archive,
            inputs / "checkpoint",
            max_bytes=SESSION_ARCHIVE_BYTES,
            max_members=SESSION_ARCHIVE_FILES,
        )
        archive.unlink()
        return inputs

    def _upload_predictions(self, session_id: int, entry: Tracked) -> None:
        if entry.run.spec.inputs is None:
            return
        predictions = read_session_file(entry.run.spec.output_dir / "predictions.csv")
        if predictions is None:
            return
        deliver(
            lambda: self.client.upload_predictions(session_id, predictions),
            f"the predictions of {session_id}",
        )

    def _datasets(self, spec: dict) -> dict[str, Path]:
        """Each dataset the session mounts, from the node's cache (copied on first use).
        What running sessions mount, and what sessions still starting have been given,
        is never evicted to make room."""
        held = {}
        for mount in spec.get("datasets", []):
            with self._lock:
                # Claimed before the copy: another start making room cannot evict it.
                self._claimed.setdefault(spec["session_id"], set()).add(mount["content_digest"])
                busy = {
                    path.name
                    for entry in self.sessions.values()
                    for path in entry.run.spec.datasets.values()
                }
                busy.update(*self._claimed.values())
            path = self.cache.ensure(
                digest=mount["digest"],
                content_digest=mount["content_digest"],
                ref=mount["ref"],
                size_bytes=mount["size_bytes"],
                in_use=busy,
            )
            held[mount["mount"]] = path
        return held

    def _follow_tensorboard(self, session_id: int, spec: RunSpec) -> TensorBoardFollower | None:
        """Scalars the session writes as TensorBoard event files (a new session's only:
        an adopted one's files would be read again from their start)."""
        if not spec.code_dir.parts or spec.code_dir == Path("."):
            return None
        roots = [spec.code_dir, spec.output_dir]

        def send(body: dict) -> None:
            deliver(
                lambda: self.client.ship_scalars(session_id, body),
                f"TensorBoard scalars of {session_id}",
            )

        return TensorBoardFollower(TensorBoardTail(roots, send))

    def _monitor(self, session_id: int, entry: Tracked, shipper: LogShipper) -> None:
        tensorboard = self._follow_tensorboard(session_id, entry.run.spec)
        if self.monitor is not None:
            self.monitor.watch(session_id, entry.run)
        threading.Thread(target=self._reap_stragglers, args=(entry.run,), daemon=True).start()
        # A copy on the node's disk: the log survives a portal that is down for longer
        # than the shipper retries.
        log_path = self.workdir / "sessions" / str(session_id) / "output.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # The agent's alone: other sessions' users pass through this folder.
        log_copy = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
        try:
            for line in entry.run.output():
                shipper.add(line)
                log_copy.write(line + "\n")
            info = entry.run.wait()
        finally:
            log_copy.close()
            shipper.close()
        if tensorboard is not None:  # the last of it, before the end is reported
            tensorboard.finish()
        if self.monitor is not None:
            self.monitor.finish(session_id)
        status, reason = self._verdict(entry, info)
        if status == "completed":
            self._upload_predictions(session_id, entry)
        self._pid_file(session_id).unlink(missing_ok=True)

        def forget() -> None:
            # Still listed as running until the portal has the end: a heartbeat in
            # between must not make it "lost".
            with self._lock:
                self.sessions.pop(session_id, None)

        reported = self._report_end(
            session_id, status, exit_code=info.exit_code, reason=reason, then=forget
        )
        with self._lock:
            self.sessions.pop(session_id, None)
        self.runtime.finished(entry.run)
        if reported:
            # Its code, outputs and inputs: what it saved went to the portal as it ran.
            # Unreported, its folder stays (its output.log is the copy of what it printed).
            self._remove_folder(session_id)
        log.info("session %s ended: %s %s", session_id, status, reason)

    def _report_end(
        self,
        session_id: int,
        status: str,
        *,
        exit_code: int | None = None,
        reason: str = "",
        then: Callable[[], None] | None = None,
    ) -> bool:
        """Tell the portal how a session ended, again and again while the network or
        the portal fails (for about two minutes): a lost report would leave it active
        there for ever. `then` runs under the report lock once the portal has it. True
        once the portal has answered."""

        def send() -> None:
            with self._report_lock:
                self.client.report_state(session_id, status, exit_code=exit_code, reason=reason)
                if then is not None:
                    then()

        return deliver(send, f"the end of session {session_id}", attempts=30)

    def _remove_folder(self, session_id: int) -> None:
        shutil.rmtree(self.workdir / "sessions" / str(session_id), ignore_errors=True)

    @staticmethod
    def _reap_stragglers(run: Run) -> None:
        """A session ends when its main process does: processes it left behind (which
        would also keep its output open) are killed a moment later."""
        run.wait()
        time.sleep(1.0)
        run.kill()

    def _verdict(self, entry: Tracked, info: ExitInfo) -> tuple[str, str]:
        code = info.exit_code
        if entry.run.killed_because:
            return "killed", entry.run.killed_because
        if info.timed_out:
            return "killed", f"ran over its time limit of {entry.run.spec.time_limit_s:g} s"
        if info.out_of_memory:
            return "killed", (
                f"out of memory: it used more than its "
                f"{entry.run.spec.memory_mb} MiB limit on node {self.name}"
            )
        if self._stopping.is_set():
            return "lost", f"the agent of node {self.name} stopped"
        if entry.stop_requested:
            return "stopped", "stopped on request"
        if code == 0:
            return "completed", ""
        if code < 0:
            return "failed", f"killed by signal {signal.Signals(-code).name}"
        return "failed", f"exited with code {code}"

    # Background loops --------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        self.probe.sample()  # primes psutil's CPU counter
        while not self._stopping.wait(self.heartbeat_seconds):
            sample = {**self.probe.sample(), "dataset_cache": dict(self.cache.stats)}
            try:
                # Heartbeats and state reports go one at a time, so the portal never
                # reads a list of running sessions older than a report it already has.
                with self._report_lock:
                    answer = self.client.heartbeat(
                        sample,
                        self.running_ids(),
                        images=self.runtime.images(),
                        datasets=self.cache.held(),
                        environments=self.runtime.environments(),
                    )
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for session_id in answer.get("ended", []):
                # The portal has settled it (lost, say, after a network cut): whatever
                # still runs must not hold on to GPUs that are handed out again. Or it
                # was asked to stop, and the stop job never came.
                with self._lock:
                    entry = self.sessions.get(session_id)
                if entry is not None and entry.stop_requested:
                    continue  # stopping already
                log.warning("the portal holds session %s as ended: stopping it", session_id)
                self.stop_session(session_id)

    def _memory_loop(self) -> None:
        while not self._stopping.wait(0.1):
            with self._lock:
                tracked = list(self.sessions.items())
            for session_id, entry in tracked:
                if self.runtime.check_memory(entry.run):
                    log.warning("session %s went over its memory limit: killed", session_id)

    # Crash recovery ----------------------------------------------------------------

    def _pid_file(self, session_id: int) -> Path:
        return self.workdir / "sessions" / str(session_id) / "pid"

    def _write_pid(self, session_id: int, run: Run) -> None:
        pid = getattr(run, "pid", None)
        if pid is not None:
            # With its start time: a pid alone may name another process after a reboot.
            started = psutil.Process(pid).create_time()
            self._pid_file(session_id).write_text(f"{pid} {started}")

    def reap_orphans(self) -> None:
        """Kill the process groups a previous, crashed agent left behind."""
        for pid_file in (self.workdir / "sessions").glob("*/pid"):
            try:
                pid_text, started_text = pid_file.read_text().split()
                process = psutil.Process(int(pid_text))
                if process.create_time() == float(started_text) and os.getpgid(process.pid) == (
                    process.pid
                ):
                    os.killpg(process.pid, signal.SIGKILL)
                    log.warning("killed the orphaned session group %s", process.pid)
            except (ValueError, psutil.Error, ProcessLookupError, PermissionError):
                pass
            pid_file.unlink(missing_ok=True)
