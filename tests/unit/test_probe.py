import pytest

from nodes.probe import Nvml, ResourceProbe, parse_declared_gpus


def test_declared_inventory_is_marked_simulated():
    gpus = parse_declared_gpus("2:A100-SXM4-80GB:81920")
    assert [(g.index, g.model, g.memory_mb, g.simulated) for g in gpus] == [
        (0, "A100-SXM4-80GB", 81920, True),
        (1, "A100-SXM4-80GB", 81920, True),
    ]
    assert parse_declared_gpus("") == []


def test_an_unreadable_inventory_is_refused():
    with pytest.raises(ValueError, match="COUNT"):
        parse_declared_gpus("lots")


def test_without_nvidias_library_a_node_has_no_gpus_unless_declared():
    nvml = Nvml()
    if nvml.available:
        pytest.skip("this machine has an NVIDIA driver")
    assert ResourceProbe(nvml).inventory()["gpus"] == []
    declared = ResourceProbe(nvml, parse_declared_gpus("1")).inventory()["gpus"]
    assert declared[0]["simulated"] is True
    sample = ResourceProbe(nvml).sample()
    assert 0 <= sample["memory_percent"] <= 100


def test_where_nvml_exists_every_gpu_reads_its_utilisation_and_memory():
    """The real path of the node's monitor: runs where an NVIDIA driver is (the device
    check runs a busy session there and shows its history, `bench/gpu_check.sh`)."""
    nvml = Nvml()
    if not nvml.available:
        pytest.skip("no NVIDIA driver on this machine")
    inventory = nvml.inventory()
    readings = nvml.usage()
    assert [r["index"] for r in readings] == [g.index for g in inventory]
    for reading, gpu in zip(readings, inventory, strict=True):
        assert 0 <= reading["utilization_percent"] <= 100
        assert 0 <= reading["memory_used_mb"] <= gpu.memory_mb
        assert "temperature_c" not in reading or 0 < reading["temperature_c"] < 120


def test_the_monitor_samples_a_process_tree_and_ships_what_the_portal_missed():
    """A real process sampled by the node's monitor; a failed shipment is kept and sent
    with the next."""
    import subprocess
    import sys
    import time

    from nodes.monitor import ResourceMonitor, Watched
    from nodes.runtime.local import LocalRun

    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nx = bytearray(30 << 20)\nt = time.time()\n"
            "while time.time() - t < 3: pass",
        ],
    )

    class Spec:
        gpu_indices: list[int] = []
        gpu_share = 0.0

    run = LocalRun.__new__(LocalRun)
    run.process, run.spec = process, Spec()  # type: ignore[assignment]
    shipped: list[list[dict]] = []
    failing = [True]

    class Client:
        def ship_resources(self, session_id, samples):
            if failing[0]:
                failing[0] = False
                raise ConnectionError("reset")
            shipped.append(list(samples))

    monitor = ResourceMonitor(Client(), Nvml(), interval=3600, ship_every=2)  # type: ignore[arg-type]
    entry = Watched(run, [], time.monotonic())
    for _ in range(4):
        time.sleep(0.4)
        sample = monitor.sample(entry, {})
        assert sample is not None
        entry.pending.append(sample)
        if len(entry.pending) >= 2:
            monitor._ship(1, entry)
    process.wait()
    monitor.close()
    assert [len(batch) for batch in shipped] == [3]  # the first try failed: kept
    assert len(entry.pending) == 1  # the fourth, waiting for the next shipment
    cpu = [s["cpu_percent"] for batch in shipped for s in batch if "cpu_percent" in s]
    assert cpu and max(cpu) > 50
    assert max(s["memory_mb"] for s in shipped[0]) > 30
    assert monitor.sample(entry, {}) is None  # ended: nothing to read


def test_a_session_over_its_share_of_a_gpu_is_killed_with_the_reason(tmp_path):
    """NVML (faked: this machine has no GPU) reports a real process of a session given a
    quarter of a 16 GiB GPU: within its share and CUDA's allowance it runs on; over,
    the monitor kills it, and its end gives the reason."""
    import time
    from dataclasses import replace

    from nodes.agent import Agent, Tracked
    from nodes.monitor import ResourceMonitor, Watched
    from nodes.runtime import get_runtime
    from tests.unit.test_local_runtime import spec

    runtime = get_runtime("local")
    run = runtime.start(
        replace(spec(tmp_path, "import time\ntime.sleep(60)\n", gpus=[0]), gpu_share=0.25)
    )
    neighbour = runtime.start(spec(tmp_path / "other", "import time\ntime.sleep(60)\n"))
    held = {neighbour.pid: 12000}  # another session's process on the same GPU

    class FakeNvml:
        def processes(self):
            return {0: (16384, dict(held))}

    monitor = ResourceMonitor(None, FakeNvml(), interval=3600)  # type: ignore[arg-type]
    watched = [(1, Watched(run, [0], time.monotonic())), (2, Watched(neighbour, [], 0.0))]
    held[run.pid] = 4096 + 1000  # its share, and less than CUDA's allowance beyond
    monitor.hold_to_shares(watched)
    assert run.process.poll() is None and not run.killed_because
    held[run.pid] = 4096 + 1100
    monitor.hold_to_shares(watched)
    info = run.wait()
    assert info.exit_code == -9
    assert run.killed_because == (
        "it held 5196 MiB of GPU 0's memory, more than its share of 0.25 "
        "(4096 MiB, and 1024 MiB for CUDA's own)"
    )
    assert Agent._verdict(None, Tracked(run), info) == ("killed", run.killed_because)  # type: ignore[arg-type]
    assert neighbour.process.poll() is None  # whole GPUs are not held to a share
    neighbour.kill()
    monitor.close()


def test_a_session_on_a_share_of_a_gpu_is_shown_its_own_part_of_it(tmp_path):
    """Two sessions share GPU 0 (NVML faked: this machine has no GPU). The board reads
    90% busy with 13 GiB used; the session on a quarter of it is shown the 3000 MiB and
    the 30% its own process drives, not its neighbour's; a session on whole GPUs is
    shown the board."""
    import time
    from dataclasses import replace

    from nodes.monitor import ResourceMonitor, Watched
    from nodes.runtime import get_runtime
    from tests.unit.test_local_runtime import spec

    runtime = get_runtime("local")
    run = runtime.start(
        replace(spec(tmp_path, "import time\ntime.sleep(60)\n", gpus=[0]), gpu_share=0.25)
    )
    neighbour = runtime.start(spec(tmp_path / "other", "import time\ntime.sleep(60)\n", gpus=[0]))
    board = {"index": 0, "utilization_percent": 90, "memory_used_mb": 13000, "power_w": 250.0}

    class FakeNvml:
        def processes(self):
            return {0: (16384, {run.pid: 3000, neighbour.pid: 10000})}

        def process_utilization(self, since_us):
            assert since_us > (time.time() - 3700) * 1e6  # the last interval's samples
            return {0: {run.pid: 30.0, neighbour.pid: 60.0}}

        def usage(self):
            return [dict(board)]

    monitor = ResourceMonitor(None, FakeNvml(), interval=3600)  # type: ignore[arg-type]
    shared, whole = Watched(run, [0], time.monotonic()), Watched(neighbour, [0], 0.0)
    watched = [(1, shared), (2, whole)]
    processes = monitor.hold_to_shares(watched)
    utilization = monitor._process_utilization()
    gpus = {0: board}
    mine = monitor.sample(shared, gpus, processes, utilization)
    assert mine is not None
    assert mine["gpus"] == [
        {"index": 0, "memory_used_mb": 3000, "utilization_percent": 30.0, "power_w": 250.0}
    ]
    theirs = monitor.sample(whole, gpus, processes, utilization)
    assert theirs is not None and theirs["gpus"] == [board]
    # Where NVML keeps no per-process samples, its utilisation is unknown, not the board's.
    unknown = monitor.sample(shared, gpus, processes, {})
    assert unknown is not None and "utilization_percent" not in unknown["gpus"][0]
    for started in (run, neighbour):
        started.kill()
    monitor.close()
