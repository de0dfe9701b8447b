"""Monitoring, credits and alerts on a whole Podium: the node agent samples a real
process, the scheduler's housekeeping charges it while it runs, asks it to checkpoint
when its owner's credit is gone (the SDK saves on the signal), then stops it; the owner
is told. Driven with the real `podium` command."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.integration.stack import PODIUM, Stack, User
from tests.integration.test_sessions import script

TRAINER = """
    import json, os, time
    from cli import sdk

    state = {"step": 0}

    def save(folder):
        with open(os.path.join(folder, "state.json"), "w") as out:
            json.dump(state, out)

    sdk.bind(save=save)
    print("bound", flush=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        state["step"] += 1
        sdk.report(step=state["step"], loss=1.0 / state["step"])
        busy = time.time() + 0.2
        while time.time() < busy:  # CPU work its node's samples show
            pass
"""


@pytest.fixture
def metered(tmp_path):
    # A GPU-second costs 10 credits: demo's 100 are gone within seconds.
    running = Stack(
        tmp_path / "stack",
        PODIUM_NODE_GPUS="1:TestGPU:16384",
        PODIUM_NODE_MONITOR_SECONDS="1",
        PODIUM_CREDIT_GPU_HOUR="36000",
        PODIUM_CREDIT_CHARGE_SECONDS="1",
        PODIUM_CREDIT_GRACE_SECONDS="4",
        PODIUM_CLUSTER_SAMPLE_SECONDS="1",
    )
    yield running
    running.stop()


def poll(check, timeout: float = 60, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(every)


def test_a_session_is_sampled_charged_warned_checkpointed_and_stopped_out_of_credit(
    metered, tmp_path
):
    demo = User(metered, tmp_path / "demo")
    demo.login("demo", "demo")
    entry = script(tmp_path / "code", TRAINER)
    ident = demo("run", str(entry), "-g", "1", "--detach").stdout.strip()
    demo.wait_for(ident, {"running"})

    # Its node samples it: CPU busy, memory held, its GPU simulated.
    def sampled():
        body = demo.json("gpumonitor", ident)
        cpu = body["series"].get("cpu_percent", {}).get("value", [])
        return body if len(cpu) >= 3 and max(cpu) > 30 else None

    resources = poll(sampled)
    assert resources["simulated_gpus"] and resources["gpus"][0]["model"] == "TestGPU"
    assert max(resources["series"]["memory_mb"]["value"]) > 5
    assert resources["average_gpu_utilization"] is None  # simulated: no reading
    shown = demo("gpumonitor", ident).stdout
    assert "simulated: they report no utilisation" in shown and "CPU %" in shown
    [gpu] = demo.json("gpustat")
    assert (gpu["session"], gpu["simulated"], gpu["model"]) == (ident, True, "TestGPU")

    # Out of credit: warned, asked to checkpoint (the SDK saves on SIGUSR1), stopped.
    stopped = demo.wait_for(ident, {"stopped"}, timeout=90)
    assert stopped["status_reason"] == "out of credit"
    saved = [c["name"] for c in demo.api("GET", f"/sessions/{ident}/checkpoints").json()]
    assert any(name.startswith("signal-") for name in saved), saved
    assert "asked to checkpoint" in demo("logs", ident).stdout
    told = demo.json("notifications")
    kinds = [n["kind"] for n in told["notifications"]]
    assert "credit_warning" in kinds and "session_out_of_credit" in kinds
    assert told["unread"] >= 2
    ledger = demo.json("credit", "--ledger")
    assert ledger and all(e["kind"] == "charge" and e["session"] == ident for e in ledger)
    assert demo.json("credit")["credit"] <= 0

    # Nothing new that costs credit starts, and the CLI says why; a grant lets it.
    follower = subprocess.Popen(
        [PODIUM, "run", str(entry), "-g", "1"],
        env=dict(os.environ, PODIUM_HOME=str(demo.home)),
        cwd=demo.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None and follower.stderr is not None
    waiting = follower.stdout.readline().strip()
    said: list[str] = []
    while len(said) < 3 and "out of credit" not in "".join(said):  # after "waiting for the
        said.append(follower.stderr.readline())  # scheduler", maybe
    assert said[-1].startswith(f"{waiting} is pending: out of credit"), said
    follower.send_signal(signal.SIGINT)  # stop following; it stays queued
    follower.wait(timeout=30)
    pending = demo.session(waiting)
    assert pending["status"] == "pending" and "out of credit" in pending["status_reason"]
    assert "nothing that costs credit starts" in demo("credit").stdout
    admin = User(metered, tmp_path / "admin")
    admin.login("admin", "admin")
    refused = demo("credit", "demo", "--grant", "5")
    assert refused.returncode == 1 and "administrator" in refused.stderr
    assert "Traceback" not in refused.stderr
    bad = admin("credit", "demo", "--grant", "-5")
    assert bad.returncode == 1 and "positive number" in bad.stderr
    granted = admin("credit", "demo", "--grant", "100000", "--reason", "workshop")
    assert granted.returncode == 0, granted.stderr
    demo.wait_for(waiting, {"running"}, timeout=30)
    assert demo("stop", waiting).returncode == 0

    # The cluster's state over time: its GPU was allocated.
    board = admin.api("GET", "/cluster", params={"span": "1h"}).json()
    assert board["gpus"] == 1 and board["simulated_gpus"] == 1
    assert max(board["history"]["allocated"]) > 0
    assert admin.api("GET", "/cluster", params={"span": "1y"}).status_code == 422
    # Someone else's session's monitor is not theirs to read (administrators read all).
    admins = admin("run", str(entry), "--detach").stdout.strip()
    refused = demo("gpumonitor", admins)
    assert refused.returncode == 1 and f"no session {admins}" in refused.stderr
    assert admin.json("gpumonitor", ident)["session"] == ident
    admin("stop", admins)
