"""Custom scorers in the `user` sandbox (a grader running as root without Docker); the
`docker` sandbox has the same tests in tests/docker/test_scorer_sandbox.py."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from grader import sandbox, scoring
from grader.sandbox import accounts, user
from grader.scoring import ScoringError, run_scorer
from tests.conftest import require

# An organiser's scorer that tries to reach what the grader holds, and says how it went.
ATTACKER = """
import os, socket

def attempt(name, action):
    try:
        return f"{name}=GOT:{action()!r:.60}"
    except Exception as exc:
        return f"{name}=no:{type(exc).__name__}"

def environ(pid):
    data = open(f"/proc/{pid}/environ", "rb").read()
    at = data.find(b"REDIS_URL=")
    return data[at:] if at >= 0 else data

def score(labels, predictions):
    raise RuntimeError(" ".join([
        attempt("parent", lambda: environ(os.getppid())),
        attempt("key", lambda: open(%(key)r, "rb").read()),
        attempt("db", lambda: open(%(database)r, "rb").read()),
        attempt("instance", lambda: os.listdir(%(instance)r)),
        attempt("net", lambda: socket.create_connection(("127.0.0.1", %(port)d), 3).recv(64)),
    ]))
"""

# A grader process, started with the secrets in its environment from the first instruction
# (as `podium up` starts it): /proc/PID/environ shows only what a process started with.
GRADER = """
import sys
import tempfile
from pathlib import Path
from grader.scoring import ScoringError, run_scorer
try:
    print(run_scorer(Path(sys.argv[1]), ["1"], ["1"]))
except ScoringError as exc:
    print(exc)
"""

# The same grader running the scorer as a plain child process, as it did before
# sandboxes: the control that shows the attacker works.
UNISOLATED = """
import subprocess, sys
call = "import sys; exec(open(sys.argv[1]).read()); score([], [])"
done = subprocess.run([sys.executable, "-I", "-c", call, sys.argv[1]], capture_output=True)
print(done.stderr.decode().strip().splitlines()[-1])
"""


@pytest.fixture(autouse=True)
def fresh_choice() -> Iterator[None]:
    """Each test chooses the sandbox again, as a grader process does once."""
    sandbox.configured.cache_clear()
    yield
    sandbox.configured.cache_clear()


@pytest.fixture
def user_sandbox(monkeypatch) -> None:
    monkeypatch.setenv("PODIUM_SCORER_SANDBOX", "user")
    try:
        sandbox.configured()
    except sandbox.SandboxUnavailable as exc:
        require("PODIUM_REQUIRE_SCORER_SANDBOX", f"no user sandbox here: {exc}")


@pytest.fixture
def grader_secrets() -> Iterator[dict[str, str]]:
    """An instance folder laid out as the grader's: 0700, key and database 0600. It sits
    in the shared temporary folder, not under pytest's private one, so that only its own
    modes keep the scorer out."""
    instance = Path(tempfile.mkdtemp(prefix="podium-instance-"))  # 0700
    (instance / "grader").mkdir(mode=0o700)
    found = {
        "redis_password": secrets.token_hex(8),
        "key_text": secrets.token_hex(8),
        "database_text": secrets.token_hex(8),
        "instance": str(instance),
        "key": str(instance / "grader" / "secret.key"),
        "database": str(instance / "podium.db"),
    }
    for path, text in (
        (found["key"], found["key_text"]),
        (found["database"], found["database_text"]),
    ):
        Path(path).write_text(text)
        Path(path).chmod(0o600)
    yield found
    shutil.rmtree(instance)


@pytest.fixture
def listener() -> Iterator[dict]:
    """A TCP server on the grader's loopback, as Redis is, counting who connects."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    seen: dict = {
        "port": server.getsockname()[1],
        "connections": 0,
        "greeting": secrets.token_hex(8),
    }
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            seen["connections"] += 1
            connection.sendall(seen["greeting"].encode())
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield seen
    stop.set()
    thread.join()
    server.close()


def attack(tmp_path: Path, grader_secrets: dict, listener: dict, grader: str) -> str:
    scorer = tmp_path / "score.py"
    scorer.write_text(ATTACKER % {**grader_secrets, "port": listener["port"]})
    environment = {
        **os.environ,
        "REDIS_URL": f"redis://:{grader_secrets['redis_password']}@127.0.0.1:6379/0",
        "PODIUM_GRADER_KEY_FILE": grader_secrets["key"],
    }
    done = subprocess.run(
        [sys.executable, "-c", grader, str(scorer)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_unisolated_the_attacker_gets_every_secret(tmp_path, grader_secrets, listener):
    error = attack(tmp_path, grader_secrets, listener, UNISOLATED)
    for secret in ("redis_password", "key_text", "database_text"):
        assert grader_secrets[secret] in error
    assert listener["greeting"] in error and "instance=GOT" in error


def test_a_scorer_reaches_nothing_the_grader_holds(
    user_sandbox, tmp_path, grader_secrets, listener
):
    error = attack(tmp_path, grader_secrets, listener, GRADER)
    assert error.startswith("the competition's scorer failed: RuntimeError: ")
    for target in ("parent", "key", "db", "instance"):
        assert f"{target}=no:PermissionError" in error
    assert "net=no:OSError" in error  # the network is unreachable in its namespace
    for secret in ("redis_password", "key_text", "database_text"):
        assert grader_secrets[secret] not in error
    assert listener["connections"] == 0


def test_a_custom_scorer_gets_strings_and_returns_a_number(user_sandbox, tmp_path):
    scorer = tmp_path / "score.py"
    scorer.write_text(
        "import os\n"
        "def score(labels, predictions):\n"
        "    assert os.environ.get('PODIUM_GRADER_KEY_FILE') is None  # nothing inherited\n"
        "    assert set(os.listdir('.')) == {'scorer.py', 'input.json'}\n"
        "    print('organisers may print while they debug')\n"
        "    return sum(a == b for a, b in zip(labels, predictions)) / len(labels)\n"
    )
    assert run_scorer(scorer, ["1", "2", "3", "4"], ["1", "2", "0", "4"]) == 0.75


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def score(labels, predictions):\n    return 1 / 0\n", "ZeroDivisionError"),
        ("def score(labels, predictions):\n    return 'high'\n", "failed: ValueError"),
        ("def score(labels, predictions):\n    return float('nan')\n", "not finite"),
        ("x = [0] * (4 * 1024**3)\n", "MemoryError"),
        ("raise RuntimeError('x' * 1000)\n", r"failed: RuntimeError: x{286}$"),
    ],
)
def test_a_failing_scorer_fails_the_submission_with_its_reason(
    user_sandbox, tmp_path, body, message
):
    scorer = tmp_path / "score.py"
    scorer.write_text(body)
    with pytest.raises(ScoringError, match=message):
        run_scorer(scorer, ["1"], ["1"])


@pytest.mark.parametrize(
    "body",
    [
        "import time\ndef score(labels, predictions):\n    time.sleep(60)\n",
        "def score(labels, predictions):\n    while True:\n        pass\n",
    ],
    ids=["waits", "computes"],
)
def test_a_scorer_over_its_time_is_stopped(user_sandbox, tmp_path, monkeypatch, body):
    monkeypatch.setattr(scoring, "SCORER_TIME_LIMIT_S", 1)
    scorer = tmp_path / "score.py"
    scorer.write_text(body)
    with pytest.raises(ScoringError, match=r"ran out of time \(1 s of CPU, 2 s in all\)"):
        run_scorer(scorer, ["1"], ["1"])


def test_nothing_a_scorer_starts_outlives_it(user_sandbox, tmp_path):
    """A process left behind could wait for the next competition's labels."""
    scorer = tmp_path / "score.py"
    scorer.write_text(
        "import os, time\n"
        "def score(labels, predictions):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        time.sleep(600)\n"
        "    return 1.0\n"
    )
    assert run_scorer(scorer, ["1"], ["1"]) == 1.0
    first = user.UserSandbox().uid
    scorer_uids = range(first, first + accounts.SLOTS)
    running = [
        process.pid
        for process in psutil.process_iter(["uids", "status"])
        if process.info["uids"].real in scorer_uids
        and process.info["status"] != psutil.STATUS_ZOMBIE  # killed, awaiting its reaper
    ]
    assert running == []


def test_without_root_or_docker_a_scorer_is_refused_not_run(tmp_path, monkeypatch):
    # "Not root" is simulated: the tests may well run as root.
    monkeypatch.setattr(user, "running_as_root", lambda: False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.setenv("PODIUM_SCORER_SANDBOX", "auto")
    ran = tmp_path / "ran"
    scorer = tmp_path / "score.py"
    scorer.write_text(
        f"open({str(ran)!r}, 'w').close()\ndef score(labels, predictions):\n    return 1\n"
    )
    with pytest.raises(ScoringError, match="need Docker or a grader running as root"):
        run_scorer(scorer, ["1"], ["1"])
    monkeypatch.setenv("PODIUM_SCORER_SANDBOX", "docker")
    with pytest.raises(ScoringError, match=r"docker sandbox .* no Docker engine answers"):
        run_scorer(scorer, ["1"], ["1"])
    assert not ran.exists()
