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
