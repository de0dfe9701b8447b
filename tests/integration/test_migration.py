"""`podium node drain NODE --migrate` on real processes: a session that bound `save`
checkpoints when asked, stops, and goes on from that checkpoint on a second node agent;
one that bound nothing finishes where it is."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.integration.stack import Stack, User
from tests.integration.test_sessions import script

COUNTER = """
    import time
    from cli import sdk
    state = {"step": 0}
    def save(folder):
        open(folder + "/step", "w").write(str(state["step"]))
    def load(folder):
        state["step"] = int(open(folder + "/step").read())
        print("resumed at step", state["step"], flush=True)
    sdk.bind(save=save, load=load)
    if sdk.RESUME:
        sdk.load(sdk.RESUME)
    while True:
        state["step"] += 1
        sdk.report(state["step"], loss=1 / state["step"])
        time.sleep(0.1)
"""

PLAIN = """
    import time
    print("plain", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def two_nodes(tmp_path):
    stack = Stack(tmp_path / "stack")
    agent = stack.child("-m nodes").cmdline()
    url = agent[agent.index("--url") + 1]
    second = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nodes",
            "--url",
            url,
            "--name",
            "second",
            "--workdir",
            str(tmp_path / "second"),
            "--stop-sessions-on-exit",
            # Not the first agent's uids: each agent ends whatever runs as its session's
            # uid when the session ends (one agent per host is the usual way).
            "--session-uids",
            "63000-63099",
        ],
        env=dict(os.environ, PODIUM_NODE_JOIN_TOKEN=stack.join_token()),
        stdout=(tmp_path / "second.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    yield stack, second
    second.terminate()
    second.wait(timeout=30)
    stack.stop()


def logs_say(user: User, ident: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in user("logs", ident).stdout:
        assert time.monotonic() < deadline, user("logs", ident).stdout[-2000:]
        time.sleep(0.2)


def test_a_drain_with_migrate_moves_a_session_from_its_checkpoint(two_nodes, tmp_path):
    stack, _second = two_nodes
    admin = User(stack, tmp_path / "admin")
    admin.login("admin", "admin")
    deadline = time.monotonic() + 60
    while len([n for n in admin.json("node", "ls") if n["status"] == "ready"]) < 2:
        assert time.monotonic() < deadline, admin.json("node", "ls")
        time.sleep(0.2)
    first = next(n["name"] for n in admin.json("node", "ls") if n["name"] != "second")
    # Nothing goes to the second node until the first is drained.
    admin("node", "drain", "second")

    demo = User(stack, tmp_path / "demo", cwd=tmp_path)
    demo.login("demo", "demo")
    moving = demo("run", str(script(tmp_path / "counter", COUNTER)), "--detach").stdout.strip()
    staying = demo("run", str(script(tmp_path / "plain", PLAIN)), "--detach").stdout.strip()
    for ident in (moving, staying):
        assert demo.wait_for(ident, {"running"})["node"] == first
    deadline = time.monotonic() + 60
    while not demo.session(moving)["saves_on_signal"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    logs_say(demo, staying, "plain")

    admin("node", "drain", "second", "--undo")
    drained = admin("node", "drain", first, "--migrate")
    assert drained.returncode == 0, drained.stderr
    assert f"checkpointing to move elsewhere: {moving}" in drained.stdout
    assert f"left to finish there (no `save` bound): {staying}" in drained.stdout

    stopped = demo.wait_for(moving, {"stopped"}, timeout=60)
    reason = stopped["status_reason"]
    assert reason.startswith(f"migrated: node {first} is drained; it goes on as "), reason
    moved = reason.rsplit(" ", 1)[1]
    session = demo.wait_for(moved, {"running"}, timeout=60)
    assert session["node"] == "second" and session["forked_from"] == moving
    checkpoint = session["resume_checkpoint"]
    assert checkpoint.startswith("signal-")
    assert session["memo"] == (
        f"migrated from {moving} (node {first} drained), from checkpoint {checkpoint}"
    )
    # It goes on from the step it saved, not from the start.
    logs_say(demo, moved, f"resumed at step {checkpoint.removeprefix('signal-')}")
    assert demo.session(staying)["status"] == "running"
    assert demo.session(staying)["node"] == first
    for ident in (moved, staying):
        demo("stop", ident)
    for ident in (moved, staying):
        demo.wait_for(ident, {"stopped"}, timeout=60)
