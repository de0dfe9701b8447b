"""Shares of one GPU on the whole stack (`podium up` with a node declaring one 16 GiB
GPU: this machine has none, so the GPU is simulated and the cap is only an
environment variable here)."""

from __future__ import annotations

import pytest

from tests.integration.stack import Stack, User
from tests.integration.test_sessions import script

SHARER = """
    import os, time
    print("sees", os.environ["CUDA_VISIBLE_DEVICES"],
          "cap", os.environ.get("PODIUM_GPU_MEMORY_FRACTION"), flush=True)
    time.sleep(6)
"""


@pytest.fixture
def one_gpu(tmp_path):
    running = Stack(tmp_path / "stack", PODIUM_NODE_GPUS="1:TestGPU:16384")
    yield running
    running.stop()


def test_sessions_share_one_gpu_each_within_its_part(one_gpu, tmp_path):
    demo = User(one_gpu, tmp_path / "demo")
    demo.login("demo", "demo")
    entry = script(tmp_path / "code", SHARER)

    def refused(*args: str, message: str) -> None:
        result = demo("run", str(entry), *args, "--detach")
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr

    refused("-g", "1.5", message="a share of one GPU in thousandths")
    refused("-g", "0.01", message="a share of one GPU is from 0.05 to 0.999")
    refused("-g", "0.5", "--gpu-memory", "1G", message="not several")
    refused(
        "--gpu-memory",
        "20G",
        message="asks for 20480 MiB of one GPU's memory but the largest GPU has 16384 MiB",
    )
    assert demo.json("ps") == []

    half = demo("run", str(entry), "-g", "0.5", "--detach").stdout.strip()
    quarter = demo("run", str(entry), "--gpu-memory", "4G", "--detach").stdout.strip()
    late = demo("run", str(entry), "-g", "0.5", "--detach").stdout.strip()
    for ident in (half, quarter):
        demo.wait_for(ident, {"running"})
    listed = {s["id"]: s for s in demo.json("ps")}
    # Both on GPU 0 at once; the second half waits for room on it.
    assert (listed[half]["gpu_indices"], listed[half]["gpu_share"]) == ([0], 0.5)
    assert (listed[quarter]["gpu_indices"], listed[quarter]["gpu_share"]) == ([0], 0.25)
    assert listed[late]["status"] == "pending"
    assert "0.5 of a GPU" in listed[late]["status_reason"]
    (gpu,) = demo.json("gpustat")
    assert [(h["session"], h["share"]) for h in gpu["holders"]] == [(half, 0.5), (quarter, 0.25)]
    assert f"{half} (0.5), {quarter} (0.25)" in demo("gpustat").stdout
    table = demo("ps").stdout
    assert "0 (0.5)" in table and "0 (0.25)" in table and "0.5 GPU wanted" in table
    for ident in (half, quarter):
        demo.wait_for(ident, {"completed"}, timeout=60)
    demo.wait_for(late, {"completed"}, timeout=60)
    logs = {ident: demo("logs", ident).stdout for ident in (half, quarter, late)}
    assert "sees 0 cap 0.5" in logs[half] and "sees 0 cap 0.25" in logs[quarter]
    assert "sees 0 cap 0.5" in logs[late]
    started = [demo.session(i)["started_at"] for i in (half, quarter, late)]
    assert started[2] > max(started[:2])
