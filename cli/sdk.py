"""The in-session SDK: the few lines training code adds.

    from cli import sdk

    sdk.bind(save=save_fn, load=load_fn, infer=infer_fn)
    for epoch in range(epochs):
        ...
        sdk.report(step=epoch, **{"train/loss": loss, "valid/acc": acc})
        sdk.save(epoch)
    data_dir = sdk.DATASET_PATH

Inside a Podium session (PODIUM_SESSION is set) `report` hands scalars to a background
thread that sends them in batches, so training never waits on the network; `save`
uploads a checkpoint. A program that binds `save` checkpoints when the platform asks
(SIGUSR1: before it is stopped for lack of credit), as `signal-STEP` after the last
reported step. Outside Podium the same script runs unchanged: `report` prints
and `save` writes under ./.podium/checkpoints/.
"""

from __future__ import annotations

import atexit
import csv
import importlib.abc
import importlib.util
import io
import math
import os
import shutil
import signal
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.archive import SESSION_ARCHIVE_BYTES, SESSION_ARCHIVE_FILES, spool, unpack
from cli.envelope import error_message

SESSION = os.environ.get("PODIUM_SESSION")
DATASET_PATH = os.environ.get("PODIUM_DATASET_PATH", os.path.join(os.getcwd(), "data"))
OUTPUT_PATH = os.environ.get("PODIUM_OUTPUT", os.getcwd())
# The checkpoint a forked session starts from (`podium fork S --checkpoint C`), or None.
RESUME = os.environ.get("PODIUM_RESUME") or None
LOCAL_CHECKPOINTS = Path(".podium") / "checkpoints"

_bound: dict[str, Callable[..., Any]] = {}


def bind(
    save: Callable[[str], Any] | None = None,
    load: Callable[[str], Any] | None = None,
    infer: Callable[..., Any] | None = None,
) -> None:
    """Tell Podium how to checkpoint (`save(dir)`, `load(dir)`) and predict
    (`infer(test_inputs_path)` -> {id: prediction} or (id, prediction) pairs).

    In a grading session (a competition submission) this call does the grading: it
    restores the submitted checkpoint with `load`, predicts the hidden test inputs with
    `infer`, writes the predictions and ends the program, so the training code after it
    never runs there."""
    for name, function in (("save", save), ("load", load), ("infer", infer)):
        if function is not None:
            _bound[name] = function
    if GRADING and "load" in _bound and "infer" in _bound:
        _grade()
        raise SystemExit(0)
    if MODE in ("serve", "infer") and "load" in _bound and "infer" in _bound:
        _serve() if MODE == "serve" else _predict_input()
        raise SystemExit(0)
    if save is not None and SESSION and not GRADING:
        _save_on_signal()


_last_step: int | None = None
_last_report_at = 0.0  # time.time() of the last `report`
_checkpoint_asked = False
_saving = threading.Lock()
# A loop that reported this recently saves at its next `report` (between two steps);
# one that has not reported for this long after being asked saves at once.
REPORTING_SECONDS = 10.0
ASKED_SECONDS = 30.0


def _save_on_signal() -> None:
    """Checkpoint on SIGUSR1, and tell the platform it may ask (only the main thread
    may set a signal handler; bound elsewhere, the platform does not ask)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGUSR1, _checkpoint_now)
    import requests

    try:
        requests.post(
            f"{os.environ['PODIUM_API']}/sessions/{SESSION}/bound",
            json={"save": True},
            headers={"Authorization": f"Bearer {os.environ.get('PODIUM_TOKEN', '')}"},
            timeout=10,
        )
    except (requests.RequestException, KeyError) as exc:
        print(f"podium: could not tell the platform that save is bound: {exc}", file=sys.stderr)


def _checkpoint_now(_signum: int, _frame: Any) -> None:
    """SIGUSR1. A program in a loop that reports saves at its next `report`, so that a
    checkpoint never catches a step half done; one that does not report saves here,
    between two bytecodes of its main thread."""
    global _checkpoint_asked
    if time.time() - _last_report_at < REPORTING_SECONDS and not _checkpoint_asked:
        _checkpoint_asked = True
        # Still asked after a while (the loop stopped reporting): asked again, saved then.
        timer = threading.Timer(ASKED_SECONDS, _ask_again)
        timer.daemon = True
        timer.start()
        return
    _checkpoint_asked = False
    _save_as_asked()


def _ask_again() -> None:
    if _checkpoint_asked:
        os.kill(os.getpid(), signal.SIGUSR1)


def _save_as_asked() -> None:
    if not _saving.acquire(blocking=False):
        print("podium: asked to checkpoint while saving one: that one stands", flush=True)
        return
    name = "signal" if _last_step is None else f"signal-{_last_step}"
    try:
        print(f"podium: asked to checkpoint; saving {name}", flush=True)
        _save(name)
    except Exception as exc:
        print(f"podium: the checkpoint {name} failed: {exc}", file=sys.stderr, flush=True)
    finally:
        _saving.release()


MODE = os.environ.get("PODIUM_MODE", "")  # grade, serve, infer; empty: train
GRADING = MODE == "grade"


def _grade() -> None:
    inputs = Path(os.environ["PODIUM_INPUTS"])
    _bound["load"](str(inputs / "checkpoint"))
    result = _bound["infer"](str(inputs / "test.csv"))
    pairs = result.items() if hasattr(result, "items") else result
    target = Path(OUTPUT_PATH) / "predictions.csv"
    rows = 0
    with target.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "prediction"])
        for ident, prediction in pairs:
            writer.writerow(
                [ident, prediction.item() if hasattr(prediction, "item") else prediction]
            )
            rows += 1
    print(f"podium: wrote {rows} predictions for grading", flush=True)


def _pairs(result: Any) -> list[list[Any]]:
    """What `infer` returned ({id: prediction} or pairs) as [id, prediction] rows of
    plain values."""
    pairs = result.items() if hasattr(result, "items") else result
    plain = []
    for ident, prediction in pairs:
        plain.append(
            [
                ident.item() if hasattr(ident, "item") else ident,
                prediction.item() if hasattr(prediction, "item") else prediction,
            ]
        )
    return plain


def _api(method: str, path: str, **kwargs: Any) -> Any:
    import requests

    return requests.request(
        method,
        f"{os.environ['PODIUM_API']}/sessions/{SESSION}{path}",
        headers={"Authorization": f"Bearer {os.environ.get('PODIUM_TOKEN', '')}"},
        **kwargs,
    )


def _predict_input() -> None:
    """Infer mode (`podium infer`): restore the checkpoint, predict the session's input
    file, upload the predictions (a CSV: id, prediction)."""
    if RESUME:
        load(RESUME)
    with tempfile.TemporaryDirectory(prefix="podium-infer-") as folder:
        source = Path(folder) / "input.csv"
        response = _api("GET", "/input", timeout=600, stream=True)
        if response.status_code >= 400:
            raise RuntimeError(f"reading the input failed: {error_message(response)}")
        with source.open("wb") as out:
            for chunk in response.iter_content(2**20):
                out.write(chunk)
        rows = _pairs(_bound["infer"](str(source)))
        target = Path(folder) / "predictions.csv"
        with target.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["id", "prediction"])
            writer.writerows(rows)
        with target.open("rb") as body:
            response = _api("PUT", "/predictions", data=body, timeout=600)
        if response.status_code >= 400:
            raise RuntimeError(f"uploading the predictions failed: {error_message(response)}")
    print(f"podium: predicted {len(rows)} rows", flush=True)


def _request_file(body: dict[str, Any], folder: Path) -> Path:
    """A prediction request as the file `infer` reads: its CSV, or its rows under a
    header `id,x1,...`."""
    path = folder / "request.csv"
    if "csv" in body:
        path.write_text(body["csv"])
        return path
    rows = body["rows"]
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", *(f"x{i}" for i in range(1, len(rows[0])))])
        writer.writerows(rows)
    return path


def _answer(requests: list[dict[str, Any]], folder: Path, traceback: Any) -> list[dict[str, Any]]:
    """Each request's predictions, or the error its infer raised. Requests of rows of
    one width whose ids differ are predicted together, in one call of `infer` (a
    model predicts 16 rows about as fast as one); if that call raises, each is tried
    alone, so that an error is its own request's."""
    together = [r for r in requests if "rows" in r["body"]]
    ids = [row[0] for r in together for row in r["body"]["rows"]]
    widths = {len(row) for r in together for row in r["body"]["rows"]}
    if len(together) > 1 and len(widths) == 1 and len(set(map(str, ids))) == len(ids):
        try:
            path = _request_file(
                {"rows": [row for r in together for row in r["body"]["rows"]]}, folder
            )
            found = {str(k): v for k, v in _pairs(_bound["infer"](str(path)))}
            replies = [
                {
                    "id": r["id"],
                    "predictions": {
                        str(row[0]): found.get(str(row[0])) for row in r["body"]["rows"]
                    },
                }
                for r in together
            ]
            alone = [r for r in requests if "rows" not in r["body"]]
            return replies + _answer_each(alone, folder, traceback)
        except Exception:
            pass  # tried one by one below, each with its own error
    return _answer_each(requests, folder, traceback)


def _answer_each(
    requests: list[dict[str, Any]], folder: Path, traceback: Any
) -> list[dict[str, Any]]:
    replies = []
    for item in requests:
        try:
            path = _request_file(item["body"], folder)
            replies.append(
                {"id": item["id"], "predictions": dict(_pairs(_bound["infer"](str(path))))}
            )
        except Exception as exc:
            traceback.print_exc()
            replies.append({"id": item["id"], "error": f"{type(exc).__name__}: {exc}"})
    return replies


def _serve() -> None:
    """Serve mode (`podium serve`): restore the checkpoint once, then answer the
    server's requests with `infer` until the server ends. A request whose infer raises
    is answered with the error; the replica goes on."""
    import traceback

    if RESUME:
        load(RESUME)
    print(f"podium: serving checkpoint {RESUME or '(none)'}", flush=True)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="podium-serve-") as folder:
        while True:
            try:
                response = _api("GET", "/serve/next", params={"wait": 10}, timeout=60)
            except Exception as exc:  # the portal restarting: try again
                failures += 1
                print(f"podium: asking for requests failed ({exc})", file=sys.stderr)
                time.sleep(min(0.2 * 2**failures, 5.0))
                continue
            if response.status_code >= 400:
                failures += 1
                print(f"podium: {error_message(response)}", file=sys.stderr, flush=True)
                if response.status_code < 500 and failures > 5:
                    raise RuntimeError("the portal refuses this replica's polls")
                time.sleep(min(0.2 * 2**failures, 5.0))
                continue
            failures = 0
            found = response.json()
            if found.get("stop"):
                print("podium: its server ended; stopping", flush=True)
                return
            replies = _answer(found.get("requests", []), Path(folder), traceback)
            if replies:
                sent = _api("POST", "/serve/replies", json={"replies": replies}, timeout=60)
                if sent.status_code >= 400:
                    print(f"podium: replies refused: {error_message(sent)}", file=sys.stderr)


class _Reporter:
    """Sends what `report` hands it from a daemon thread, in requests of at most
    MAX_POINTS points, numbered (`stream`, `seq`) so that a retry whose answer was lost
    is not stored twice. Nothing is dropped: a failed request is retried until it is
    stored (with a growing pause), and when more than MAX_PENDING reports wait, `report`
    waits for room (bounded memory) instead of dropping any. Everything is sent before
    the process exits."""

    MAX_PENDING = 100_000  # report() calls waiting to be sent
    MAX_POINTS = 50_000  # points in one request

    def __init__(self, api: str, token: str, session: str, interval: float = 0.5):
        import uuid

        import requests

        self.url = f"{api}/sessions/{session}/events"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.interval = interval
        self.stream = uuid.uuid4().hex[:16]
        self.seq = 0
        self._pending: list[tuple[int, float, dict[str, Any]]] = []
        self._room = threading.Condition()
        self._closing = threading.Event()
        self._given_up = False
        self._thread = threading.Thread(target=self._loop, name="podium-report", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def add(self, step: int, wall: float, scalars: dict[str, Any]) -> None:
        with self._room:
            while len(self._pending) >= self.MAX_PENDING and not self._given_up:
                self._room.wait(0.5)  # back-pressure: the sender makes room
            self._pending.append((step, wall, scalars))

    def _take(self) -> list[tuple[int, float, dict[str, Any]]]:
        with self._room:
            taken, points = 0, 0
            for _step, _wall, scalars in self._pending:
                if taken and points + len(scalars) > self.MAX_POINTS:
                    break
                taken += 1
                points += len(scalars)
            batch, self._pending = self._pending[:taken], self._pending[taken:]
            self._room.notify_all()
        return batch

    @staticmethod
    def _columns(batch: list[tuple[int, float, dict[str, Any]]]) -> dict[str, dict[str, list]]:
        columns: dict[str, dict[str, list]] = {}
        for step, wall, scalars in batch:
            for tag, value in scalars.items():
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    number = math.nan
                if not math.isfinite(number):
                    print(
                        f"podium: {tag}={value!r} at step {step} is not a finite number; skipped",
                        file=sys.stderr,
                    )
                    continue
                column = columns.get(tag)
                if column is None:
                    column = columns[tag] = {"step": [], "value": [], "wall_time": []}
                column["step"].append(int(step))
                column["value"].append(number)
                column["wall_time"].append(wall)
        return columns

    def _post(self, columns: dict[str, dict[str, list]]) -> None:
        """Until it is stored, or refused for good (an ended session, bad data)."""
        self.seq += 1
        body = {"stream": self.stream, "seq": self.seq, "scalars": columns}
        attempt = 0
        while True:
            try:
                response = self.http.post(self.url, json=body, timeout=60)
                if response.status_code < 400:
                    return
                if response.status_code < 500 and response.status_code != 429:
                    print(f"podium: events refused: {error_message(response)}", file=sys.stderr)
                    return
            except Exception as exc:  # the network must never break training
                if attempt == 0:
                    print(f"podium: sending events failed ({exc}); retrying", file=sys.stderr)
            attempt += 1
            if self._given_up:
                print("podium: the portal did not answer; unsent events lost", file=sys.stderr)
                return
            time.sleep(min(0.2 * 2**attempt, 5.0))

    def _loop(self) -> None:
        while True:
            closing = self._closing.wait(self.interval)
            while batch := self._take():
                columns = self._columns(batch)
                if columns:
                    self._post(columns)
            if closing:
                return

    def close(self, timeout: float = 600.0) -> None:
        """Send everything before the process ends (waiting up to `timeout` for a
        portal that does not answer)."""
        self._closing.set()
        self._thread.join(timeout=timeout)
        if self._thread.is_alive():
            with self._room:
                self._given_up = True
                self._room.notify_all()


_reporter: _Reporter | None = None


def _remote() -> _Reporter | None:
    global _reporter
    if _reporter is None and SESSION and os.environ.get("PODIUM_API"):
        _reporter = _Reporter(os.environ["PODIUM_API"], os.environ.get("PODIUM_TOKEN", ""), SESSION)
    return _reporter


def report(step: int, **scalars: float) -> None:
    """Record scalars at `step`, e.g. `report(step=3, **{"train/loss": 0.2})`. In a
    session this only hands them to the sending thread (a few microseconds)."""
    global _last_step, _last_report_at, _checkpoint_asked
    _last_step = step
    _last_report_at = now = time.time()
    if _checkpoint_asked:  # the platform asked: saved here, between two steps
        _checkpoint_asked = False
        _save_as_asked()
    reporter = _reporter or _remote()
    if reporter is not None:
        reporter.add(step, now, scalars)
        return
    shown = []
    for tag, value in scalars.items():
        number = float(value)
        if not math.isfinite(number):
            print(
                f"podium: {tag}={value} at step {step} is not a finite number; skipped",
                file=sys.stderr,
            )
            continue
        shown.append(f"{tag}={number:.6g}")
    print(f"[step {step}] {' '.join(shown)}", flush=True)


def _pack(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.inodes.clear()  # type: ignore[attr-defined]  # no hard links: refused
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


def save(name: str | int) -> None:
    """Checkpoint through the bound `save(dir)`, uploaded as `name`."""
    if "save" not in _bound:
        raise RuntimeError("call sdk.bind(save=...) before sdk.save()")
    # Held while saving: the platform's request to checkpoint (a signal, handled on this
    # same thread) does not start a second save in the middle of this one.
    with _saving:
        _save(str(name))


def _save(name: str) -> None:
    if not SESSION:
        target = LOCAL_CHECKPOINTS / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        _bound["save"](str(target))
        return
    import requests

    with tempfile.TemporaryDirectory(prefix="podium-save-") as folder:
        _bound["save"](folder)
        body = _pack(Path(folder))
    response = requests.put(
        f"{os.environ['PODIUM_API']}/sessions/{SESSION}/checkpoints/{name}",
        data=body,
        headers={
            "Authorization": f"Bearer {os.environ.get('PODIUM_TOKEN', '')}",
            "Content-Type": "application/gzip",
        },
        timeout=600,
    )
    if response.status_code >= 400:
        raise RuntimeError(f"saving checkpoint {name} failed: {error_message(response)}")


def load(name: str | int, session: str | None = None) -> Any:
    """Restore checkpoint `name` (of `session`, default this one) through the bound load."""
    if "load" not in _bound:
        raise RuntimeError("call sdk.bind(load=...) before sdk.load()")
    name = str(name)
    source = session or SESSION
    if not source:
        return _bound["load"](str(LOCAL_CHECKPOINTS / name))
    import requests

    response = requests.get(
        f"{os.environ['PODIUM_API']}/sessions/{source}/checkpoints/{name}",
        headers={"Authorization": f"Bearer {os.environ.get('PODIUM_TOKEN', '')}"},
        timeout=600,
        stream=True,
    )
    if response.status_code >= 400:
        raise RuntimeError(
            f"loading checkpoint {name} of {source} failed: {error_message(response)}"
        )
    with tempfile.TemporaryDirectory(prefix="podium-load-") as folder:
        with tempfile.TemporaryFile() as file:
            archive = spool(response.iter_content(2**20), file)
            try:
                unpack(
                    archive,
                    Path(folder),
                    max_bytes=SESSION_ARCHIVE_BYTES,
                    max_members=SESSION_ARCHIVE_FILES,
                )
            except tarfile.TarError as exc:
                raise RuntimeError(f"loading checkpoint {name} of {source}: {exc}") from None
        return _bound["load"](folder)


def infer(*args: Any, **kwargs: Any) -> Any:
    if "infer" not in _bound:
        raise RuntimeError("call sdk.bind(infer=...) first")
    return _bound["infer"](*args, **kwargs)


# A share of a GPU --------------------------------------------------------------------
# A session given a share of one GPU (`podium run -g 0.25`) is told the part of its
# memory it may use; PyTorch reads no variable for it, so the SDK caps PyTorch's CUDA
# allocator at that fraction, when torch is imported (before this module or after).
GPU_MEMORY_FRACTION = float(os.environ.get("PODIUM_GPU_MEMORY_FRACTION") or 0) or None


def cap_gpu_memory(torch_module: Any) -> bool:
    """Cap each visible GPU at the session's share, when CUDA starts (not before: a
    program that forks workers before touching CUDA still may); False when there is
    nothing to cap (no share, or no CUDA) or it could not be (said on stderr: the node
    still holds the session to its share)."""
    cuda = getattr(torch_module, "cuda", None)
    if GPU_MEMORY_FRACTION is None or cuda is None:
        return False
    fraction = GPU_MEMORY_FRACTION

    def cap() -> None:
        for device in range(cuda.device_count()):
            cuda.set_per_process_memory_fraction(fraction, device)

    try:
        if not cuda.is_available():
            return False
        lazy = getattr(cuda, "_lazy_call", None)
        initialised = getattr(cuda, "is_initialized", lambda: True)()
        if lazy is not None and not initialised:
            lazy(cap)
        else:
            cap()
    except Exception as exc:
        print(f"podium: could not cap PyTorch's GPU memory at {fraction:g}: {exc}", file=sys.stderr)
        return False
    return True


class _AfterTorch(importlib.abc.MetaPathFinder):
    """Runs `cap_gpu_memory` once torch has been imported."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            cap_gpu_memory(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if GPU_MEMORY_FRACTION is not None:
    if "torch" in sys.modules:
        cap_gpu_memory(sys.modules["torch"])
    else:
        sys.meta_path.insert(0, _AfterTorch())
