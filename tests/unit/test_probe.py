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
