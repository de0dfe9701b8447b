from scheduler.policy import Cluster, NodeView, Request
from scheduler.queueing import Pending, plan


def node(name, gpus, free=None):
    free = range(gpus) if free is None else free
    return NodeView(name, gpus, tuple(free), 64, 64, 512000, 512000)


def pending(key, user, gpus, at, grading=False):
    return Pending(key, user, Request(gpus=gpus, cpus=1, memory_mb=1024), at, grading)


def test_grading_goes_before_training():
    cluster = Cluster.of([node("a", 1)])
    decided = plan(
        [pending("train", "ada", 1, 0.0), pending("grade", "bob", 1, 5.0, True)], cluster
    )
    assert [p.key for p, _ in decided.placed] == ["grade"]
    assert decided.waiting["train"].startswith("first in line for 1 GPU")


def test_one_users_queue_does_not_starve_the_others():
    cluster = Cluster.of([node("a", 8)])
    flood = [pending(f"ada-{i}", "ada", 1, float(i)) for i in range(500)]
    late = [pending("bob-1", "bob", 1, 1000.0), pending("cy-1", "cy", 1, 2000.0)]
    decided = plan(flood + late, cluster)
    placed = [p.key for p, _ in decided.placed]
    assert "bob-1" in placed and "cy-1" in placed
    assert len(placed) == 8


def test_those_already_holding_gpus_come_after_the_others():
    cluster = Cluster.of([node("a", 1)])
    decided = plan(
        [pending("ada-2", "ada", 1, 0.0), pending("bob-1", "bob", 1, 1.0)],
        cluster,
        held_gpus={"ada": 4},
    )
    assert [p.key for p, _ in decided.placed] == ["bob-1"]


def test_backfill_never_takes_the_heads_reserved_node():
    # The head needs 8 GPUs; node "big" has 6 free and is reserved for it. A later 1-GPU
    # session may start on "small" but not on "big".
    cluster = Cluster.of([node("big", 8, range(6)), node("small", 2, [0])])
    decided = plan(
        [
            pending("head", "ada", 8, 0.0),
            pending("tiny", "bob", 1, 1.0),
            pending("tiny-2", "cy", 1, 2.0),
        ],
        cluster,
    )
    assert decided.head == "head" and decided.reserved == "big"
    assert [(p.key, pl.node) for p, pl in decided.placed] == [("tiny", "small")]
    assert decided.waiting["tiny-2"] == "waiting for 1 GPU, 1 CPU, 1024 MiB"
    assert "(big is held for it)" in decided.waiting["head"]


def test_the_heads_reservation_stays_on_its_node_while_it_waits():
    # Last round "left" was held for the head with 6 GPUs free; now "right" has 7 free.
    # The head keeps "left" (which nothing else took meanwhile): moving the reservation
    # to whichever node is emptier would let the other fill again, and neither empty.
    cluster = Cluster.of([node("left", 8, range(6)), node("right", 8, range(7))])
    waiting = [pending("head", "ada", 8, 0.0), pending("tiny", "bob", 1, 1.0)]
    fresh = plan(waiting, cluster)
    assert fresh.reserved == "right"
    cluster = Cluster.of([node("left", 8, range(6)), node("right", 8, range(7))])
    decided = plan(waiting, cluster, kept=("head", "left"))
    assert decided.reserved == "left"
    assert [(p.key, pl.node) for p, pl in decided.placed] == [("tiny", "right")]
    # Another head, or a node that could no longer hold it, gets a fresh choice.
    cluster = Cluster.of([node("left", 8, range(6)), node("right", 8, range(7))])
    assert plan(waiting, cluster, kept=("other", "left")).reserved == "right"
    cluster = Cluster.of([node("left", 4, range(4)), node("right", 8, range(7))])
    assert plan(waiting, cluster, kept=("head", "left")).reserved == "right"


def test_without_backfill_everyone_waits_behind_the_head():
    cluster = Cluster.of([node("big", 8, range(6)), node("small", 2)])
    decided = plan(
        [pending("head", "ada", 8, 0.0), pending("tiny", "bob", 1, 1.0)], cluster, backfill=False
    )
    assert decided.placed == []
    assert decided.waiting["tiny"] == "queued behind head"


def test_fifo_within_a_user():
    cluster = Cluster.of([node("a", 1)])
    decided = plan([pending("second", "ada", 1, 2.0), pending("first", "ada", 1, 1.0)], cluster)
    assert [p.key for p, _ in decided.placed] == ["first"]


def test_fairness_holds_for_cpu_only_sessions_too():
    cluster = Cluster.of([NodeView("cpu", 0, (), 8, 8, 10**6, 10**6)])
    flood = [Pending(f"ada-{i}", "ada", Request(cpus=1), float(i)) for i in range(500)]
    decided = plan([*flood, Pending("bob-1", "bob", Request(cpus=1), 1000.0)], cluster)
    assert "bob-1" in [p.key for p, _ in decided.placed]


def test_a_head_without_gpus_does_not_hold_a_gpu_node():
    big_memory = Request(cpus=1, memory_mb=400_000)
    cluster = Cluster.of(
        [
            NodeView("gpu", 8, tuple(range(8)), 64, 64, 512000, 300_000),
            NodeView("cpu", 0, (), 64, 64, 512000, 100_000),
        ]
    )
    decided = plan(
        [Pending("head", "ada", big_memory, 0.0), pending("small", "bob", 1, 1.0)], cluster
    )
    assert decided.reserved == "cpu"
    assert [(p.key, pl.node) for p, pl in decided.placed] == [("small", "gpu")]
