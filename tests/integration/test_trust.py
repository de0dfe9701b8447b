"""Strangers' code stays contained, tried with exactly what each attacker has: a session
of a trusted user on the local runtime, any process on the host, and a stranger who
signs up on a `podium up` without --demo."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import requests
from redis import Redis
from redis.exceptions import RedisError

from tests.integration.stack import Stack, User

ATTACK = """
import os, sys, time
from pathlib import Path

instance = Path(sys.argv[1])
earlier = instance / "node" / "sessions" / str(int(Path.cwd().parent.name) - 1)
targets = {
    "earlier-session-log": earlier / "output.log",
    "earlier-session-code": earlier / "code" / "main.py",
    "agent-environ": Path(f"/proc/{os.getppid()}/environ"),
    "config": instance / "config.py",
    "database": instance / "podium.db",
    "grader-key": instance / "grader" / "secret.key",
    "node-token": instance / "node" / "node.token",
    "redis-config": instance / "redis" / "server.conf",
}
for label, path in targets.items():
    try:
        print(label, "GOT", path.read_bytes()[:60], flush=True)
    except OSError as exc:
        print(label, "no", type(exc).__name__, flush=True)
try:
    print("listing GOT", os.listdir(instance), flush=True)
except OSError as exc:
    print("listing no", type(exc).__name__, flush=True)
print("uid", os.getuid(), flush=True)
time.sleep(120)
"""


def secrets_of(instance: Path) -> list[str]:
    namespace: dict[str, str] = {}
    exec((instance / "config.py").read_text(), namespace)
    return [namespace[key] for key in ("SECRET_KEY", "NODE_JOIN_TOKEN", "EMBEDDED_REDIS_PASSWORD")]


def wait_for_line(user: User, ident: str, prefix: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in user("logs", ident).stdout.splitlines():
            if line.startswith(prefix):
                return user("logs", ident).stdout
        time.sleep(0.3)
    raise AssertionError(f"{ident} never printed {prefix!r}: {user('logs', ident).stdout}")


@pytest.mark.skipif(os.geteuid() != 0, reason="the agent drops privileges only as root")
def test_a_trusted_users_session_reads_nothing_of_the_agent_or_the_instance(stack, demo, tmp_path):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "main.py").write_text("print('a secret of an earlier session')\n")
    assert demo("run", str(earlier / "main.py")).returncode == 0
    code = tmp_path / "attack"
    code.mkdir()
    (code / "main.py").write_text(textwrap.dedent(ATTACK))
    ident = demo("run", str(code / "main.py"), "-a", str(stack.instance), "--detach")
    ident = ident.stdout.strip()
    log = wait_for_line(demo, ident, "uid ")
    lines = [line for line in log.splitlines() if line.split(" ")[0] != "uid"]
    assert lines and all(" no " in line for line in lines), log
    assert "uid 0" not in log
    for secret in secrets_of(stack.instance):
        assert secret not in log
    # `podium exec` beside it runs as the session's user, not as the agent's.
    beside = demo("exec", ident, "--", "id", "-u")
    assert beside.returncode == 0, beside.stderr
    assert beside.stdout.strip() not in ("", "0")
    peek = demo("exec", ident, "--", "cat", str(stack.instance / "config.py"))
    assert peek.returncode != 0 and "Permission denied" in peek.stdout + peek.stderr
    demo("stop", ident)


def test_a_client_without_the_password_cannot_talk_to_redis(stack):
    server = next(p for p in stack.descendants() if "valkey" in p.name() or "redis" in p.name())
    listening = [
        c.laddr.port for c in server.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN
    ]
    assert listening
    with pytest.raises(RedisError, match=r"(?i)auth"):
        Redis(host="127.0.0.1", port=listening[0], socket_timeout=5).ping()
    with pytest.raises(RedisError, match=r"(?i)auth"):
        Redis(host="127.0.0.1", port=listening[0], socket_timeout=5).rpush("grader", "x")
    # Nor is the password on a command line, which every process on the host may read.
    password = secrets_of(stack.instance)[2]
    for process in stack.descendants():
        assert password not in " ".join(process.cmdline())


def test_the_node_agent_holds_no_server_credential(stack):
    agent = stack.child("-m nodes")
    environment = Path(f"/proc/{agent.pid}/environ").read_bytes()
    assert b"REDIS_URL" not in environment and b"DATABASE_URL" not in environment
    assert secrets_of(stack.instance)[2].encode() not in environment


@pytest.fixture(scope="module")
def open_portal(tmp_path_factory):
    # A machine where no Docker engine answers: `podium up` without --demo, as a
    # newcomer would start it.
    running = Stack(
        tmp_path_factory.mktemp("open"), demo=False, DOCKER_HOST="unix:///nonexistent.sock"
    )
    yield running
    running.stop()


def test_a_stranger_who_signs_up_cannot_run_code_on_the_host(open_portal, tmp_path):
    log = (open_portal.root / "stack.log").read_text()
    assert "only trusted users' code may run" in log
    signed_up = requests.post(
        open_portal.url + "/api/v1/auth/users",
        json={"username": "mallory", "password": "correct horse"},
        timeout=10,
    )
    assert signed_up.status_code == 201 and signed_up.json()["level"] == "user"
    mallory = User(open_portal, tmp_path / "home", cwd=tmp_path)
    mallory.login("mallory", "correct horse")
    planted = tmp_path / "planted"
    code = tmp_path / "code"
    code.mkdir()
    (code / "x.py").write_text(f"open({str(planted)!r}, 'w').write('ran')\n")
    result = mallory("run", str(code / "x.py"))
    assert result.returncode != 0
    assert "needs a node that runs sessions in containers" in result.stderr
    assert "Traceback" not in result.stderr
    assert mallory.json("ps") == []
    time.sleep(1)
    assert not planted.exists()
    # Nor may a stranger organise a competition (and so run a scorer).
    created = mallory.api("POST", "/competitions", data={"spec": "{}"})
    assert created.status_code == 403


def test_no_secret_reaches_a_log(stack, demo, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "hello.py").write_text("print('hello')\n")
    assert demo("run", str(code / "hello.py")).returncode == 0
    secrets = [*secrets_of(stack.instance), demo.token()]
    logs = [stack.root / "stack.log", *stack.instance.glob("**/*.log")]
    assert len(logs) > 5
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"{log} holds a secret"
