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
    assert best["first_multi_gpu_failure"] is None
    # b holds half a GPU: allocation counts shares, and every GPU is in use.
    assert best["final_allocation_ratio"] == 0.95 and best["final_gpus_in_use_ratio"] == 1.0
    worst = run(capsys, "--nodes", nodes, "--trace", trace, "--policy", "worst-fit")
    failure = worst["first_multi_gpu_failure"]
    assert failure["task"] == "c"
    assert failure["allocation_ratio"] == 0.15 and failure["gpus_in_use_ratio"] == 0.2
    # With shares rounded up to whole GPUs, b takes a whole one.
    whole = run(capsys, "--nodes", nodes, "--trace", trace, "--policy", "best-fit", "--whole-gpus")
    assert whole["final_allocation_ratio"] == 1.0 and whole["whole_gpus"] is True


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


TIMED_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time\n"
)


def test_packing_a_timed_file_keeps_every_row_in_the_files_order(tmp_path, nodes, capsys):
    """Times play no part in packing: a row without them is packed like the others, and
    a later creation time does not move a row."""
    trace = write(
        tmp_path / "timed.csv",
        TIMED_HEADER
        + "late,1000,1024,8,1000,,LS,Running,500,600,500\n"
        + "untimed,1000,1024,2,1000,,LS,Failed,,,\n"
        + "early,1000,1024,1,1000,,LS,Running,0,100,0\n",
    )
    result = run(capsys, "--nodes", nodes, "--trace", trace, "--mode", "packing")
    assert result["rows"] == 3 and result["tasks"] == 3 and result["rows_left_out"] == 0
    # In the file's order: the 8-GPU task first takes n8, the 2-GPU task n2, and the
    # 1-GPU task finds no room. Sorted by time, `early` would have come first.
    assert result["placed"] == 2
    assert result["first_gpu_failure"]["task"] == "early"
    assert result["first_gpu_failure"]["allocation_ratio"] == 1.0
    assert result["first_multi_gpu_failure"] is None


def test_a_task_no_node_could_ever_hold_is_not_a_failure(tmp_path, nodes, capsys):
    trace = write(
        tmp_path / "trace.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"
        "huge,1000,1024,16,1000,\n"
        "a100,1000,1024,1,1000,A100\n"
        "fine,1000,1024,1,1000,\n"
        "t4,1000,1024,2,1000,T4\n"
        "more,1000,1024,8,1000,\n",
    )
    for policy in ("best-fit", "first-fit"):
        result = run(capsys, "--nodes", nodes, "--trace", trace, "--policy", policy)
        assert result["never_fit"] == 2 and result["tasks"] == 5
        first = result["first_gpu_failure"]
        assert first == result["first_multi_gpu_failure"]
        assert first["task"] == "t4"  # "fine" took a GPU of the T4 node
        assert result["tie_break"]


def test_the_first_failure_of_any_gpu_request_beside_the_first_multi_gpu_one(
    tmp_path, nodes, capsys
):
    trace = write(
        tmp_path / "trace.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"
        "v100,1000,1024,1,1000,V100M32\n"
        "t4a,1000,1024,1,1000,T4\n"
        "t4b,1000,1024,1,1000,T4\n"
        "t4c,1000,1024,1,1000,T4\n"
        "eight,1000,1024,8,1000,\n",
    )
    result = run(capsys, "--nodes", nodes, "--trace", trace)
    assert result["first_gpu_failure"]["task"] == "t4c"
    assert result["first_gpu_failure"]["gpu_models"] == ["T4"]
    assert result["first_gpu_failure"]["allocation_ratio"] == 0.3
    assert result["first_multi_gpu_failure"]["task"] == "eight"
    assert result["not_placed"] == 2


def test_draws_and_a_fraction_of_the_cluster(tmp_path, capsys):
    nodes = write(
        tmp_path / "nodes.csv",
        "sn,cpu_milli,memory_mib,gpu,model\n"
        + "".join(f"n{i},8000,65536,2,T4\n" for i in range(10)),
    )
    trace = write(
        tmp_path / "trace.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\none,1000,1024,1,1000\ntwo,1000,1024,2,1000\n",
    )
    first = run(capsys, "--nodes", nodes, "--trace", trace, "--draw", "50")
    again = run(capsys, "--nodes", nodes, "--trace", trace, "--draw", "50")
    other = run(capsys, "--nodes", nodes, "--trace", trace, "--draw", "50", "--draw-seed", "7")
    assert first == again and first["tasks"] == 50 and first["draw"] == {"tasks": 50, "seed": 42}
    assert first["first_gpu_failure"] != other["first_gpu_failure"]
    half = run(capsys, "--nodes", nodes, "--trace", trace, "--nodes-every", "2")
    assert half["nodes"] == 5 and half["gpus"] == 10
    assert main(["--nodes", str(nodes), "--trace", str(trace), "--nodes-every", "0"]) == 2
    assert "positive" in capsys.readouterr().err
    from scheduler.simulate import read_nodes

    assert [n.name for n in read_nodes(nodes, 4, 1)] == ["n1", "n5", "n9"]
    third = run(capsys, "--nodes", nodes, "--trace", trace, "--nodes-every", "3")
    other_third = run(
        capsys, "--nodes", nodes, "--trace", trace, "--nodes-every", "3", "--nodes-offset", "2"
    )
    assert (third["nodes"], other_third["nodes"]) == (4, 3)
    args = ["--nodes", str(nodes), "--trace", str(trace), "--nodes-every", "3"]
    assert main([*args, "--nodes-offset", "3"]) == 2
    assert "--nodes-offset takes 0 to K-1" in capsys.readouterr().err


def test_the_bound_is_what_a_clairvoyant_placement_reaches(tmp_path, nodes, capsys):
    """Eight unconstrained 1-GPU tasks, then two that need the T4s: all ten fit (the
    bound is the whole cluster), but best fit puts the first two on the small T4 node
    and the T4 tasks find it taken."""
    trace = write(
        tmp_path / "trace.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"
        + "".join(f"any{i},1000,1024,1,1000,\n" for i in range(8))
        + "t4a,1000,1024,1,1000,T4\nt4b,1000,1024,1,1000,T4\nover,1000,1024,1,1000,\n",
    )
    best = run(capsys, "--nodes", nodes, "--trace", trace, "--bound")
    assert best["bound"] == {"allocation_ratio": 1.0, "task_index": 10}
    assert best["first_gpu_failure"]["task"] == "t4a"
    assert best["first_gpu_failure"]["allocation_ratio"] == 0.8
    # CPUs count too: a node whose CPUs are taken holds no more, whatever its GPUs.
    cpu_bound = write(
        tmp_path / "cpus.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"
        "wide,60000,1024,1,1000,V100M32\nnarrow,5000,1024,1,1000,V100M32\n",
    )
    result = run(capsys, "--nodes", nodes, "--trace", cpu_bound, "--bound")
    assert result["bound"] == {"allocation_ratio": 0.1, "task_index": 1}


# Shapes of the openb traces, made here from the default file (the variants beside it
# are kept for measuring, not for tuning): a fifth of the GPU tasks bound to GPU models,
# as in `openb_pod_list_gpuspec*`, and CPU-only work twice as common, as the `cpu*`
# files vary it.
SPECS = {
    "T4": 35,
    "G2": 15,
    "P100": 15,
    "V100M16|V100M32": 10,
    "P100|V100M16|V100M32": 6,
    "G3": 5,
    "V100M32": 4,
    "G2|P100|T4|V100M16|V100M32": 5,
    "A10|T4": 5,
}


def shaped(tmp_path: Path, kind: str) -> Path:
    import csv
    import random

    rng = random.Random(7)
    with (TRACES / "openb_pod_list_default.csv").open(newline="") as source:
        rows = list(csv.DictReader(source))
    columns = ["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec"]
    out = []
    for row in rows:
        row = {c: row.get(c, "") for c in columns}
        if kind == "gpuspec" and row["num_gpu"] != "0" and rng.random() < 0.2:
            row["gpu_spec"] = rng.choices(list(SPECS), weights=list(SPECS.values()))[0]
        out.append(row)
        if kind == "cpu" and row["num_gpu"] == "0":
            out.append({**row, "name": row["name"] + "-again"})
    path = tmp_path / f"{kind}.csv"
    with path.open("w", newline="") as target:
        writer = csv.DictWriter(target, columns)
        writer.writeheader()
        writer.writerows(out)
    return path


@pytest.mark.skipif(not TRACES.is_dir(), reason="the openb traces are not beside the checkout")
@pytest.mark.parametrize("kind", ["gpuspec", "cpu"])
def test_fgd_packs_each_openb_shape_at_least_as_far_as_every_baseline(tmp_path, capsys, kind):
    """On the openb cluster, 20,000 tasks drawn from each shape, shares of GPUs as they
    are: `fgd` allocates at least as much as the best of best, first, worst fit and
    random before a GPU request first fails. With whole GPUs and no GPU models it is
    within 2% of the bound (shares make the bound's relaxation too loose to say)."""
    trace = shaped(tmp_path, kind)
    nodes = TRACES / "openb_node_list_gpu_node.csv"
    common = ["--nodes", nodes, "--trace", trace, "--draw", "20000"]
    reached = {}
    for policy in ("fgd", "best-fit", "first-fit", "worst-fit", "random"):
        result = run(capsys, *common, "--policy", policy)
        failure = result["first_gpu_failure"]
        reached[policy] = failure["allocation_ratio"] if failure else 1.0
    assert reached["fgd"] >= max(reached.values()), reached
    if kind == "cpu":
        whole = run(capsys, *common, "--whole-gpus", "--bound")
        failure = whole["first_gpu_failure"]
        bound = whole["bound"]["allocation_ratio"]
        assert (failure["allocation_ratio"] if failure else 1.0) >= bound - 0.02, (whole, bound)
