import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import time
    from cli import sdk
    saved = {}
    sdk.bind(save=lambda d: open(d + "/w.txt", "w").write("42"),
             load=lambda d: saved.setdefault("w", open(d + "/w.txt").read()))
    started = time.monotonic()
    for step in range(200):
        sdk.report(step=step, **{"train/loss": 1.0 / (step + 1), "valid/acc": step / 200})
    print("reported in", round(time.monotonic() - started, 3), flush=True)
    sdk.save(1)
    sdk.load(1)
    print("loaded", saved["w"], flush=True)
    """
)


def run_script(tmp_path, env, script=SCRIPT):
    (tmp_path / "train.py").write_text(script)
    return subprocess.run(
        [sys.executable, "train.py"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_outside_podium_the_sdk_prints_and_saves_locally(tmp_path):
    env = {k: "" for k in ("PODIUM_SESSION", "PODIUM_API", "PODIUM_TOKEN")}
    result = run_script(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "[step 3] train/loss=0.25 valid/acc=0.015" in result.stdout
    assert "loaded 42" in result.stdout
    assert (tmp_path / ".podium" / "checkpoints" / "1" / "w.txt").read_text() == "42"


class SlowPortal(BaseHTTPRequestHandler):
    """Takes a second over every batch of events, as a far-away portal might."""

    batches: list = []
    checkpoints: dict = {}
    bound: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/bound"):  # what the program bound: answered at once
            type(self).bound.append((self.path, body))
            return self._answer(200, b'{"accepted": 1}')
        time.sleep(1.0)
        events = [
            {"tag": tag, "step": step}
            for tag, column in body["scalars"].items()
            for step in column["step"]
        ]
        type(self).batches.append((self.headers["Authorization"], events))
        self._answer(201, b'{"accepted": 1}')

    def do_PUT(self):
        type(self).checkpoints[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(201, b"{}")

    def do_GET(self):
        self._answer(200, type(self).checkpoints[self.path])

    def _answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_portal():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowPortal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    server.shutdown()


def test_report_batches_in_the_background_and_never_waits_for_the_portal(tmp_path, slow_portal):
    env = {"PODIUM_SESSION": "ada/7", "PODIUM_API": slow_portal, "PODIUM_TOKEN": "pdm_x"}
    result = run_script(tmp_path, env)
    assert result.returncode == 0, result.stderr
    seconds = float(result.stdout.split("reported in")[1].split()[0])
    # 400 scalars against a portal that takes 1 s per request: a blocking client
    # would need minutes; the batching one returns at once.
    assert seconds < 0.5
    events = [e for _, batch in SlowPortal.batches for e in batch]
    assert len(events) == 400 and len(SlowPortal.batches) < 10
    assert {auth for auth, _ in SlowPortal.batches} == {"Bearer pdm_x"}
    assert "/api/v1/sessions/ada/7/checkpoints/1" in SlowPortal.checkpoints
    assert "loaded 42" in result.stdout


class FlakyPortal(BaseHTTPRequestHandler):
    """Fails one request in three: before storing it (503), or after (the answer is
    lost: 500 once the batch is stored), as a portal behind a flaky network does."""

    stored: dict = {}
    requests = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.requests += 1
        if cls.requests % 3 == 1:
            return self._answer(503, b"{}")
        key = (body["stream"], body["seq"])
        cls.stored.setdefault(key, body["scalars"])  # a retried batch is stored once
        self._answer(500 if cls.requests % 3 == 2 else 201, b"{}")

    _answer = SlowPortal._answer

    def log_message(self, *args):
        pass


MANY = textwrap.dedent(
    """
    import time
    from cli import sdk
    sdk._Reporter.MAX_PENDING = 5000  # small: report() must wait for room, not drop
    sdk._Reporter.MAX_POINTS = 20000
    started = time.monotonic()
    for step in range(50_000):
        sdk.report(step=step, a=step, b=-step, bad=float("nan") if step == 7 else 1.0)
    print("reported", flush=True)
    """
)


def test_nothing_reported_is_lost_when_requests_fail_or_the_buffer_fills(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyPortal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    (tmp_path / "many.py").write_text(MANY)
    try:
        done = subprocess.run(
            [sys.executable, "many.py"],
            cwd=tmp_path,
            env={**os.environ, "PODIUM_SESSION": "ada/1", "PODIUM_API": api},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    points: dict = {}
    for scalars in FlakyPortal.stored.values():
        for tag, column in scalars.items():
            points.setdefault(tag, []).extend(column["step"])
    assert sorted(points["a"]) == list(range(50_000))
    assert sorted(points["b"]) == list(range(50_000))
    assert len(points["bad"]) == 49_999  # the one NaN was skipped, and said so
    assert "bad=nan at step 7 is not a finite number" in done.stderr
    assert FlakyPortal.requests > len(FlakyPortal.stored)  # it did retry


GRADED = textwrap.dedent(
    """
    from cli import sdk
    state = {}
    def load(folder):
        state["offset"] = int(open(folder + "/offset.txt").read())
    def infer(path):
        rows = open(path).read().splitlines()[1:]
        return [(r.split(",")[0], int(r.split(",")[1]) + state["offset"]) for r in rows]
    sdk.bind(load=load, infer=infer)
    print("training, which a grading run never reaches", flush=True)
    raise SystemExit(3)
    """
)


def test_bind_grades_in_a_grading_run_and_ends_the_program(tmp_path):
    inputs, output = tmp_path / "inputs", tmp_path / "output"
    (inputs / "checkpoint").mkdir(parents=True)
    output.mkdir()
    (inputs / "checkpoint" / "offset.txt").write_text("10")
    (inputs / "test.csv").write_text("id,x\na,1\nb,2\n")
    (tmp_path / "train.py").write_text(GRADED)
    env = {"PODIUM_MODE": "grade", "PODIUM_INPUTS": str(inputs), "PODIUM_OUTPUT": str(output)}
    done = subprocess.run(
        [sys.executable, "train.py"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "never reaches" not in done.stdout
    assert (output / "predictions.csv").read_text().splitlines() == [
        "id,prediction",
        "a,11",
        "b,12",
    ]
    # Outside a grading run, bind returns and training goes on.
    done = subprocess.run(
        [sys.executable, "train.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3 and "never reaches" in done.stdout


SIGNALLED = textwrap.dedent(
    """
    import os, signal
    from cli import sdk

    def save(folder):
        with open(folder + "/w.txt", "w") as out:
            out.write("saved")

    sdk.bind(save=save)
    os.kill(os.getpid(), signal.SIGUSR1)  # asked before it reports: saved at once
    sdk.report(step=5, loss=0.5)
    os.kill(os.getpid(), signal.SIGUSR1)  # asked mid-step: saved at the next report
    print("step 5 goes on", flush=True)
    sdk.report(step=6, loss=0.4)
    sdk.save("epoch-1")
    print("went on", flush=True)
    """
)


def test_a_bound_save_runs_when_the_platform_signals_between_two_steps(tmp_path, slow_portal):
    env = {"PODIUM_SESSION": "ada/9", "PODIUM_API": slow_portal, "PODIUM_TOKEN": "pdm_x"}
    result = run_script(tmp_path, env, SIGNALLED)
    assert result.returncode == 0, result.stderr
    assert ("/api/v1/sessions/ada/9/bound", {"save": True}) in SlowPortal.bound
    saved = [path.rsplit("/", 1)[1] for path in SlowPortal.checkpoints if "/ada/9/" in path]
    assert saved == ["signal", "signal-6", "epoch-1"]
    lines = result.stdout.splitlines()
    assert lines.index("step 5 goes on") < lines.index(
        "podium: asked to checkpoint; saving signal-6"
    )
    assert "went on" in result.stdout


def test_downloads_are_unpacked_within_limits(tmp_path, slow_portal):
    """What the SDK's `load` and `podium model pull` unpack is read as the portal reads an
    upload: a checkpoint claiming a 1 GiB name is refused before it is read, with one
    clear line (tarfile alone would try to read the whole name)."""
    from tests.unit.test_archives import long_name_bomb

    bomb = long_name_bomb(tmp_path).read_bytes()
    SlowPortal.checkpoints["/api/v1/sessions/ada/7/checkpoints/bomb"] = bomb
    script = textwrap.dedent(
        """
        from cli import sdk
        sdk.bind(load=lambda folder: print("loaded", folder))
        try:
            sdk.load("bomb")
        except RuntimeError as exc:
            print(exc)
        """
    )
    env = {"PODIUM_SESSION": "ada/7", "PODIUM_API": slow_portal, "PODIUM_TOKEN": "pdm_x"}
    result = run_script(tmp_path, env, script)
    assert result.returncode == 0, result.stderr
    assert "loading checkpoint bomb of ada/7: a header of 1073741824 bytes" in result.stdout
    assert "loaded" not in result.stdout

    home = tmp_path / "home"
    home.mkdir()
    credentials = {"url": slow_portal.removesuffix("/api/v1"), "token": "pdm_x", "username": "ada"}
    (home / "credentials.json").write_text(json.dumps(credentials))
    podium = str(Path(sys.executable).with_name("podium"))
    pulled = subprocess.run(
        [podium, "model", "pull", "ada/7:bomb", str(tmp_path / "out")],
        env={**os.environ, "PODIUM_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pulled.returncode == 1
    assert pulled.stderr == (
        "podium: error: the archive was refused: a header of 1073741824 bytes"
        " (names and extended headers are limited to 8 KiB)\n"
    ), pulled.stderr
    assert not (tmp_path / "out").exists()  # nothing left behind
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


FAKE_TORCH = textwrap.dedent(
    """
    # Stands in for torch on a machine with two CUDA GPUs (this one has none).
    class cuda:
        calls = []

        @staticmethod
        def is_available():
            return True

        @staticmethod
        def device_count():
            return 2

        @classmethod
        def set_per_process_memory_fraction(cls, fraction, device):
            import os
            if os.environ.get("FAKE_CUDA_BUSY"):
                raise RuntimeError("CUDA error: all CUDA-capable devices are busy")
            cls.calls.append((fraction, device))
    """
)


@pytest.mark.parametrize("torch_first", [True, False])
def test_a_share_of_a_gpu_caps_pytorchs_memory_whenever_torch_is_imported(tmp_path, torch_first):
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(FAKE_TORCH)
    imports = ["import torch", "from cli import sdk"]
    script = "\n".join([*(imports if torch_first else imports[::-1]), "print(torch.cuda.calls)"])
    root = str(Path(__file__).resolve().parents[2])
    path = {"PYTHONPATH": os.pathsep.join([str(fake), root])}
    shared = run_script(tmp_path, {**path, "PODIUM_GPU_MEMORY_FRACTION": "0.25"}, script)
    assert shared.stdout.strip() == "[(0.25, 0), (0.25, 1)]", shared.stderr
    whole = run_script(tmp_path, {**path, "PODIUM_GPU_MEMORY_FRACTION": ""}, script)
    assert whole.stdout.strip() == "[]", whole.stderr
    # A cap that fails leaves `import torch` working, and says why.
    busy = {**path, "PODIUM_GPU_MEMORY_FRACTION": "0.25", "FAKE_CUDA_BUSY": "1"}
    failed = run_script(tmp_path, busy, script)
    assert failed.returncode == 0 and failed.stdout.strip() == "[]", failed.stderr
    assert "could not cap PyTorch's GPU memory at 0.25: CUDA error" in failed.stderr


def test_a_replica_predicts_a_batch_in_one_call_and_keeps_each_error_its_own(tmp_path):
    """Requests of rows whose ids differ go through `infer` together; when that call
    raises, each is tried alone, so that only the bad request gets the error."""
    import csv
    import traceback

    from cli import sdk

    calls = []

    def infer(path):
        with open(path) as source:
            rows = list(csv.reader(source))[1:]
        calls.append(len(rows))
        if any(len(row) != 3 for row in rows):
            raise ValueError("expected 2 features")
        if any(row[0] == "z" for row in rows):
            raise KeyError("z")
        return {row[0]: float(row[1]) + float(row[2]) for row in rows}

    saved = dict(sdk._bound)
    sdk._bound["infer"] = infer
    try:
        good = [
            {"id": "1" * 32, "body": {"rows": [["a", 1, 2], ["b", 3, 4]]}},
            {"id": "2" * 32, "body": {"csv": "id,x1,x2\nc,5,6\n"}},
            {"id": "3" * 32, "body": {"rows": [["d", 7, 8]]}},
        ]
        replies = sdk._answer(good, tmp_path, traceback)
        assert calls == [3, 1]  # a, b and d together; the CSV alone
        assert {r["id"][0]: r["predictions"] for r in replies} == {
            "1": {"a": 3.0, "b": 7.0},
            "3": {"d": 15.0},
            "2": {"c": 11.0},
        }
        calls.clear()
        clash = [
            {"id": "4" * 32, "body": {"rows": [["a", 1, 1]]}},
            {"id": "5" * 32, "body": {"rows": [["a", 2, 2]]}},
        ]
        assert [r["predictions"] for r in sdk._answer(clash, tmp_path, traceback)] == [
            {"a": 2.0},
            {"a": 4.0},
        ]
        assert calls == [1, 1]  # the same id in both: one by one
        calls.clear()
        bad = [
            {"id": "6" * 32, "body": {"rows": [["e", 1, 2, 3]]}},
            {"id": "7" * 32, "body": {"rows": [["f", 1, 2]]}},
        ]
        replies = sdk._answer(bad, tmp_path, traceback)
        assert replies == [
            {"id": "6" * 32, "error": "ValueError: expected 2 features"},
            {"id": "7" * 32, "predictions": {"f": 3.0}},
        ]
        calls.clear()
        poisoned = [
            {"id": "8" * 32, "body": {"rows": [["z", 1, 2]]}},
            {"id": "9" * 32, "body": {"rows": [["g", 1, 2]]}},
        ]
        replies = sdk._answer(poisoned, tmp_path, traceback)
        assert calls == [2, 1, 1]  # together, then each alone
        assert replies == [
            {"id": "8" * 32, "error": "KeyError: 'z'"},
            {"id": "9" * 32, "predictions": {"g": 3.0}},
        ]
    finally:
        sdk._bound.clear()
        sdk._bound.update(saved)
