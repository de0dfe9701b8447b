import json
from pathlib import Path

import pytest

from scheduler.simulate import main

TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces" / "alibaba-openb"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run(capsys, *args) -> dict:
    assert main([str(a) for a in args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def nodes(tmp_path):
    return write(
        tmp_path / "nodes.csv",
        "sn,cpu_milli,memory_mib,gpu,model\nn8,64000,262144,8,V100M32\nn2,32000,131072,2,T4\n",
    )


def test_packing_stops_the_clock_at_the_first_multi_gpu_failure(tmp_path, nodes, capsys):
    trace = write(
        tmp_path / "trace.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
        "a,1000,1024,1,1000\nb,1000,1024,1,500\nc,1000,1024,8,1000\n",
    )
    best = run(capsys, "--nodes", nodes, "--trace", trace, "--policy", "best-fit")
    assert best["mode"] == "packing" and best["placed"] == 3
    assert best["first_multi_gpu_failure"] is None and best["final_allocation_ratio"] == 1.0
    worst = run(capsys, "--nodes", nodes, "--trace", trace, "--policy", "worst-fit")
    assert worst["first_multi_gpu_failure"]["task"] == "c"
    assert worst["first_multi_gpu_failure"]["allocation_ratio"] == 0.2


def test_a_timed_replay_measures_queueing_by_gpu_count(tmp_path, nodes, capsys):
    header = (
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
        "creation_time,deletion_time,scheduled_time\n"
    )
    trace = write(
        tmp_path / "timed.csv",
        header
        + "long,1000,1024,8,1000,,LS,Running,0,100,0\n"
        + "next,1000,1024,8,1000,V100M32,LS,Running,10,60,10\n"
        + "t4,1000,1024,1,1000,T4,LS,Running,10,30,10\n"
        + "gone,1000,1024,1,1000,,LS,Failed,10,,\n",
    )
    result = run(capsys, "--nodes", nodes, "--trace", trace)
    assert result["mode"] == "replay" and result["rows_left_out"] == 1
    assert result["queueing_delay_s_by_gpus"]["8"]["count"] == 2
    assert result["queueing_delay_s_by_gpus"]["8"]["p99"] == 90.0  # waited for "long"
    assert result["queueing_delay_s_by_gpus"]["1"]["mean"] == 0.0
    assert result["makespan_s"] == 150


@pytest.mark.skipif(not TRACES.is_dir(), reason="the openb traces are not beside the checkout")
def test_best_fit_packs_the_openb_cluster_further_than_worst_fit(capsys):
    nodes = TRACES / "openb_node_list_gpu_node.csv"
    trace = TRACES / "openb_pod_list_multigpu20.csv"
    best = run(capsys, "--nodes", nodes, "--trace", trace, "--policy", "best-fit")
    worst = run(capsys, "--nodes", nodes, "--trace", trace, "--policy", "worst-fit")
    assert best["gpus"] == 6212 and best["nodes"] == 1213
    assert (
        best["first_multi_gpu_failure"]["allocation_ratio"]
        > worst["first_multi_gpu_failure"]["allocation_ratio"] + 0.5
    )


def test_unreadable_input_is_one_line(tmp_path, capsys):
    bad = write(tmp_path / "bad.csv", "what,ever\n1,2\n")
    assert main(["--nodes", str(bad), "--trace", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("simulate: cannot read the input")
