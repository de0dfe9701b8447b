"""Custom scorers in the `docker` sandbox, against a real engine and podium/base:latest."""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import threading
from collections.abc import Iterator

import pytest

from grader import sandbox, scoring
from grader.sandbox.docker import LABEL_SCORER
from grader.scoring import ScoringError, run_scorer

# An organiser's scorer that tries to reach what the grader holds, and says how it went.
ATTACKER = """
import os, socket

def attempt(name, action):
    try:
        return f"{name}=GOT:{action()!r:.60}"
    except Exception as exc:
        return f"{name}=no:{type(exc).__name__}"

def score(labels, predictions):
    raise RuntimeError(" ".join([
        attempt("parent", lambda: open(f"/proc/{os.getppid()}/environ", "rb").read()),
        attempt("key", lambda: open(%(key)r, "rb").read()),
        attempt("db", lambda: open(%(database)r, "rb").read()),
        attempt("plant", lambda: open("/scorer/scorer.py", "a").write("# next time")),
        attempt("net", lambda: socket.create_connection(("127.0.0.1", %(port)d), 3).recv(64)),
        attempt("host", lambda: socket.create_connection((%(host)r, %(port)d), 3).recv(64)),
    ]))
"""


@pytest.fixture
def docker_sandbox(docker_client, monkeypatch) -> Iterator[None]:
    monkeypatch.setenv("PODIUM_SCORER_SANDBOX", "docker")
    sandbox.configured.cache_clear()
    yield
    sandbox.configured.cache_clear()


def scorer_containers(client) -> list:
    return client.containers.list(all=True, filters={"label": LABEL_SCORER})


@pytest.fixture
def listener() -> Iterator[dict]:
    """A TCP server on every address of the host, counting who connects."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    seen: dict = {"port": server.getsockname()[1], "connections": 0}
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            seen["connections"] += 1
            connection.sendall(b"hello from the host")
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield seen
    stop.set()
    thread.join()
    server.close()


def test_a_scorer_in_docker_reaches_nothing_the_grader_holds(
    docker_sandbox, docker_client, tmp_path, monkeypatch, listener
):
    instance = tmp_path / "instance"
    (instance / "grader").mkdir(parents=True, mode=0o700)
    key, database = instance / "grader" / "secret.key", instance / "podium.db"
    key_text, database_text = secrets.token_hex(8), secrets.token_hex(8)
    for path, text in ((key, key_text), (database, database_text)):
        path.write_text(text)
        path.chmod(0o600)
    password = secrets.token_hex(8)
    monkeypatch.setenv("REDIS_URL", f"redis://:{password}@127.0.0.1:6379/0")
    monkeypatch.setenv("PODIUM_GRADER_KEY_FILE", str(key))
    # The host as a container on Docker's default network reaches it.
    bridge = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    gateway = bridge.get("Gateway") or str(ipaddress.ip_network(bridge["Subnet"])[1])
    scorer = tmp_path / "score.py"
    scorer.write_text(
        ATTACKER
        % {"key": str(key), "database": str(database), "port": listener["port"], "host": gateway}
    )
    with pytest.raises(ScoringError) as failed:
        run_scorer(scorer, ["1"], ["1"])
    error = str(failed.value)
    assert error.startswith("the competition's scorer failed: RuntimeError: ")
    # No host process is visible: its parent is outside its process namespace.
    assert "parent=no:FileNotFoundError" in error
    assert "key=no:FileNotFoundError" in error and "db=no:FileNotFoundError" in error
    assert "plant=no:" in error  # its own code, for the next submission
    assert "net=no:" in error  # its own loopback, not the host's
    assert "host=no:OSError" in error  # no route out: the network is unreachable
    for secret in (password, key_text, database_text):
        assert secret not in error
    assert listener["connections"] == 0
    assert scorer_containers(docker_client) == []


def test_a_scorer_in_docker_gets_strings_and_returns_a_number(
    docker_sandbox, docker_client, tmp_path
):
    scorer = tmp_path / "score.py"
    scorer.write_text(
        "import os\n"
        "def score(labels, predictions):\n"
        "    assert os.environ.get('PODIUM_GRADER_KEY_FILE') is None  # nothing inherited\n"
        "    assert set(os.listdir('.')) == {'scorer.py', 'input.json'}\n"
        "    assert (os.getuid(), os.getgid()) == (65534, 65534)\n"
        "    print('organisers may print while they debug')\n"
        "    return sum(a == b for a, b in zip(labels, predictions)) / len(labels)\n"
    )
    assert run_scorer(scorer, ["1", "2", "3", "4"], ["1", "2", "0", "4"]) == 0.75
    assert scorer_containers(docker_client) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def score(labels, predictions):\n    return 1 / 0\n", "ZeroDivisionError"),
        ("def score(labels, predictions):\n    return 'high'\n", "failed: ValueError"),
        ("x = [0] * (4 * 1024**3)\n", "MemoryError"),
        ("import numpy\n", "ModuleNotFoundError: No module named 'numpy'"),
        ("raise RuntimeError('x' * 1000)\n", r"failed: RuntimeError: x{286}$"),
    ],
)
def test_a_failing_scorer_in_docker_fails_with_its_reason(docker_sandbox, tmp_path, body, message):
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
def test_a_scorer_in_docker_over_its_time_is_stopped_and_removed(
    docker_sandbox, docker_client, tmp_path, monkeypatch, body
):
    monkeypatch.setattr(scoring, "SCORER_TIME_LIMIT_S", 1)
    scorer = tmp_path / "score.py"
    scorer.write_text(body)
    with pytest.raises(ScoringError, match=r"ran out of time \(1 s of CPU, 2 s in all\)"):
        run_scorer(scorer, ["1"], ["1"])
    assert scorer_containers(docker_client) == []


def test_auto_prefers_docker_where_the_engine_and_image_are(docker_client, monkeypatch):
    monkeypatch.setenv("PODIUM_SCORER_SANDBOX", "auto")
    monkeypatch.delenv("PODIUM_SCORER_IMAGE", raising=False)
    assert sandbox.choose(os.environ["PODIUM_SCORER_SANDBOX"]).name == "docker"
    monkeypatch.setenv("PODIUM_SCORER_IMAGE", "podium/no-such-image:latest")
    with pytest.raises(sandbox.SandboxUnavailable, match="no image podium/no-such-image"):
        sandbox.choose("docker")
