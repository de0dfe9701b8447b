from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from scheduler.policy import NodeView, Placement, Request, best_fit, never_fits_reason


def view(name, total, free, cpus=32.0, memory=262144):
    return NodeView(name, total, tuple(free), cpus, cpus, memory, memory)


def test_best_fit_takes_the_node_left_with_fewest_free_gpus():
    nodes = [view("big", 8, range(8)), view("half", 8, [4, 5, 6, 7]), view("two", 4, [1, 3])]
    assert best_fit(Request(gpus=2), nodes).node == "two"
    assert best_fit(Request(gpus=2), nodes).gpu_indices == (1, 3)
    assert best_fit(Request(gpus=3), nodes).node == "half"
    assert best_fit(Request(gpus=8), nodes).node == "big"


def test_nothing_fits_now_but_could_later():
    nodes = [view("a", 4, [0])]
    assert best_fit(Request(gpus=2), nodes) is None
    assert never_fits_reason(Request(gpus=2), nodes) is None


def test_a_request_no_node_could_ever_hold_says_why():
    nodes = [view("a", 4, range(4)), view("b", 8, range(8), memory=1024)]
    assert never_fits_reason(Request(gpus=9), nodes) == (
        "asks for 9 GPUs but the largest node has 8"
    )
    assert "memory" in never_fits_reason(Request(memory_mb=10**7), nodes)
    assert "together" in never_fits_reason(Request(gpus=8, memory_mb=4096), nodes)


def test_cpu_and_memory_limit_placement():
    nodes = [NodeView("a", 0, (), 4, 1.0, 8192, 8192)]
    assert best_fit(Request(cpus=2), nodes) is None
    assert best_fit(Request(cpus=1, memory_mb=8192), nodes).node == "a"


node_views = st.lists(
    st.builds(
        lambda total, taken, index: view(
            f"n{index}", total, [i for i in range(total) if i not in set(taken)]
        ),
        st.integers(0, 8),
        st.lists(st.integers(0, 7), max_size=8),
        st.integers(0, 10**6),
    ),
    min_size=1,
    max_size=12,
    unique_by=lambda n: n.name,
)


@given(node_views, st.integers(0, 8))
def test_never_over_allocates_and_places_when_capacity_exists(nodes, gpus):
    placement = best_fit(Request(gpus=gpus), nodes)
    capable = [n for n in nodes if len(n.free_gpus) >= gpus]
    if not capable:
        assert placement is None
        return
    assert placement is not None
    chosen = next(n for n in nodes if n.name == placement.node)
    assert len(placement.gpu_indices) == gpus
    assert set(placement.gpu_indices) <= set(chosen.free_gpus)
    # Best fit: no capable node would have had fewer GPUs left over.
    assert len(chosen.free_gpus) == min(len(n.free_gpus) for n in capable)


@given(node_views, st.lists(st.integers(1, 8), max_size=20))
def test_best_fit_keeps_the_largest_free_block_whole(nodes, requests):
    """Placing a stream of requests never splits the node with the most free GPUs while a
    node with fewer free GPUs could take the request."""
    free = {n.name: list(n.free_gpus) for n in nodes}
    for gpus in requests:
        views = [view(name, 8, f) for name, f in free.items()]
        placement = best_fit(Request(gpus=gpus), views)
        if placement is None:
            continue
        largest = max(len(f) for f in free.values())
        if len(free[placement.node]) == largest:
            assert all(len(f) < gpus or len(f) == largest for f in free.values())
        free[placement.node] = [i for i in free[placement.node] if i not in placement.gpu_indices]
        assert len(set(free[placement.node])) == len(free[placement.node])


def test_locality_comes_before_best_fit_and_its_weights_can_turn_it_off():
    from scheduler.policy import Weights, place

    cached = NodeView(
        "cached",
        8,
        tuple(range(8)),
        32,
        32,
        10**6,
        10**6,
        datasets=frozenset({"imagenet:3"}),
        images=frozenset({"torch:2"}),
    )
    snug = view("snug", 2, [0, 1])
    request = Request(gpus=1, datasets=frozenset({"imagenet:3"}))
    assert place(request, [cached, snug]).node == "cached"
    assert place(request, [cached, snug], weights=Weights(dataset=0)).node == "snug"
    assert place(Request(gpus=1, image="torch:2"), [cached, snug]).node == "cached"
    assert place(Request(gpus=1, image="other"), [cached, snug]).node == "snug"


def test_gpu_models_and_drained_nodes_limit_the_choice():
    from dataclasses import replace

    from scheduler.policy import place

    t4 = replace(view("t4", 4, range(4)), gpu_model="T4")
    v100 = replace(view("v100", 8, range(8)), gpu_model="V100M32")
    wants = Request(gpus=1, gpu_models=frozenset({"V100M16", "V100M32"}))
    assert place(wants, [t4, v100]).node == "v100"
    assert place(wants, [t4, replace(v100, drained=True)]) is None
    assert place(Request(gpus=1), [t4, replace(v100, drained=True)]).node == "t4"
    assert "no node has" in never_fits_reason(
        Request(gpus=1, gpu_models=frozenset({"A100"})), [t4, v100]
    )


def test_the_baselines():
    import random

    from scheduler.policy import place

    nodes = [view("a", 8, range(8)), view("b", 8, range(2)), view("c", 8, range(5))]
    assert place(Request(gpus=1), nodes, "first-fit").node == "a"
    assert place(Request(gpus=1), nodes, "worst-fit").node == "a"
    assert place(Request(gpus=1), nodes, "best-fit").node == "b"
    chosen = {place(Request(gpus=3), nodes, "random", rng=random.Random(s)).node for s in range(30)}
    assert chosen == {"a", "c"}


locality_nodes = st.lists(
    st.builds(
        lambda name, total, taken, images, datasets, isolating: NodeView(
            f"n{name}",
            total,
            tuple(i for i in range(total) if i not in taken),
            16.0,
            16.0,
            65536,
            65536,
            images=frozenset(images),
            datasets=frozenset(datasets),
            isolating=isolating,
        ),
        st.integers(0, 10_000),
        st.integers(0, 8),
        st.sets(st.integers(0, 7)),
        st.sets(st.sampled_from(["env:a", "env:b", "env:c"]), max_size=2),
        st.sets(st.sampled_from(["mnist:1", "mnist:2", "cifar:1"]), max_size=2),
        st.booleans(),
    ),
    max_size=30,
    unique_by=lambda n: n.name,
)
locality_requests = st.builds(
    Request,
    gpus=st.integers(0, 8),
    image=st.sampled_from(["", "env:a", "env:b", "env:z"]),
    datasets=st.sets(st.sampled_from(["mnist:1", "cifar:1", "imagenet:1"])).map(frozenset),
    trusted=st.booleans(),
)


@given(locality_nodes, locality_requests)
def test_the_locality_index_decides_as_scoring_every_node_would(nodes, request):
    from scheduler.policy import DEFAULT_WEIGHTS, Cluster, locality

    cluster = Cluster.of(nodes)
    fast = cluster._best_with_locality(request, DEFAULT_WEIGHTS, frozenset())
    scan = cluster._best_with_locality_by_scan(request, DEFAULT_WEIGHTS, frozenset())
    assert (fast is None) == (scan is None)
    if fast is None or scan is None:
        return

    def merit(node):
        return (locality(node, request, DEFAULT_WEIGHTS), len(node.free_gpus))

    assert merit(fast) == merit(scan)
    if merit(scan)[0] > 0:  # ties among nodes with locality go by name, as before
        assert fast.name == scan.name


def test_fgd_keeps_a_scarce_model_for_the_requests_that_need_it():
    """A quarter of the recent demand can run only on the T4s of the small node: `fgd`
    sends requests that accept any model to the big node and the T4 requests still fit;
    best fit fills the small node first and they find it taken."""
    from scheduler.fragmentation import Demand
    from scheduler.policy import Cluster

    def nodes():
        return [
            NodeView("big", 8, tuple(range(8)), 64, 64, 2**18, 2**18, gpu_model="V100M32"),
            NodeView("small", 2, (0, 1), 32, 32, 2**17, 2**17, gpu_model="T4"),
        ]

    anything, t4 = Request(gpus=1), Request(gpus=1, gpu_models=frozenset({"T4"}))
    placed = {}
    for policy in ("fgd", "best-fit"):
        demand = Demand()
        for _ in range(10):
            for request in (anything, anything, anything, t4):
                demand.observe(request)
        cluster = Cluster.of(nodes(), demand)
        where = []
        for request in [anything] * 8 + [t4, t4]:
            placement = cluster.place(request, policy)
            where.append(placement.node if placement else None)
            if placement:
                cluster.allocate(request, placement)
        placed[policy] = where
    assert placed["fgd"] == ["big"] * 8 + ["small"] * 2
    assert placed["best-fit"][:2] == ["small", "small"] and placed["best-fit"][8:] == [None, None]


def test_the_class_plan_leaves_a_scarce_class_to_the_requests_bound_to_it():
    """The P100-only demand bounds how much of the mix the cluster holds, so the first
    linear program is indifferent to where the requests that accept any model go: the
    plan must not send them to the T4s, the only home of the T4-only ones."""
    from scheduler.fragmentation import ClassPlan, node_class, shape

    nodes = [
        NodeView("t4", 2, (0, 1), 32, 32, 2**17, 2**17, gpu_model="T4"),
        NodeView("v100", 8, tuple(range(8)), 64, 64, 2**18, 2**18, gpu_model="V100M32"),
        NodeView("p100", 1, (0,), 16, 16, 2**16, 2**16, gpu_model="P100"),
    ]
    anything = Request(gpus=1)
    t4 = Request(gpus=1, gpu_models=frozenset({"T4"}))
    p100 = Request(gpus=1, gpu_models=frozenset({"P100"}))
    mix = ((shape(anything), 0.5), (shape(t4), 0.1), (shape(p100), 0.4))
    free = {node_class(n): (float(n.total_gpus), n.total_cpus, n.total_memory_mb) for n in nodes}
    plan = ClassPlan.solve(mix, free)
    split = plan.targets[plan.group(anything)]
    t4_class = node_class(nodes[0])
    assert split.get(t4_class, 0.0) < 1e-6, split
    assert abs(sum(split.values()) - 1) < 1e-6


def test_fgd_keeps_the_only_nodes_a_kind_fits_though_no_model_is_asked_for():
    """No request names a GPU model, but an 8-GPU task with 120 CPUs fits only the
    128-CPU node. A 4-GPU task with 60 CPUs strands less there (68 CPUs stay beside its
    4 free GPUs, 36 on a 96-CPU node), so fragmentation alone sends it there; the plan
    keeps that node for the kind that has no other."""
    from scheduler.fragmentation import Demand
    from scheduler.policy import Cluster

    def node(name, cpus):
        return NodeView(name, 8, tuple(range(8)), cpus, cpus, 2**20, 2**20, gpu_model="G2")

    four, narrow = Request(gpus=4, cpus=60), Request(gpus=8, cpus=120)
    demand = Demand()
    for _ in range(10):
        for request in (four, Request(gpus=4, cpus=40), four, Request(gpus=4, cpus=40), narrow):
            demand.observe(request)
    cluster = Cluster.of([node("a-128", 128), *(node(f"b-96-{i}", 96) for i in range(3))], demand)
    where = []
    for request in [four] * 3 + [narrow]:
        placement = cluster.place(request, "fgd")
        where.append(placement.node if placement else None)
        if placement:
            cluster.allocate(request, placement)
    assert where == ["b-96-0", "b-96-1", "b-96-2", "a-128"], where


# Shares of GPUs ---------------------------------------------------------------------


def test_shares_fill_a_gpu_already_shared_before_breaking_a_whole_one():
    from scheduler.policy import POLICIES, Cluster

    for policy in POLICIES:
        cluster = Cluster.of([view("n", 2, [0, 1])])
        quarter, half = Request(gpu_milli=250), Request(gpu_milli=500)
        first = cluster.place(half, policy)
        assert first == Placement("n", (0,), 500), policy
        cluster.allocate(half, first)
        second = cluster.place(quarter, policy)
        # Into GPU 0's free half, not GPU 1: a 1-GPU request still fits after.
        assert second == Placement("n", (0,), 250), policy
        cluster.allocate(quarter, second)
        assert cluster.nodes["n"].free_gpus == (1,) and cluster.nodes["n"].partial == ((0, 250),)
        assert cluster.place(Request(gpus=1), policy) == Placement("n", (1,))
        assert cluster.place(Request(gpus=2), policy) is None
        cluster.release(half, first)
        cluster.release(quarter, second)
        assert cluster.nodes["n"].free_gpus == (0, 1) and cluster.nodes["n"].partial == ()


def test_a_share_by_memory_is_measured_against_each_nodes_gpus():
    from scheduler.policy import place

    small = replace(view("small", 1, [0]), gpu_memory_mb=16384)
    large = replace(view("large", 1, [0]), gpu_memory_mb=81920)
    ten = Request(gpu_memory_mb=10240)
    # A quarter of a large GPU's memory is more than half of a small one's.
    assert place(ten, [small]) == Placement("small", (0,), 625)
    assert place(ten, [large]) == Placement("large", (0,), 125)
    shared = replace(small, free_gpus=(), partial=((0, 500),))
    assert place(ten, [shared]) is None
    assert never_fits_reason(ten, [shared]) is None  # it fits once the GPU is free
    assert never_fits_reason(Request(gpu_memory_mb=20000), [small]) == (
        "asks for 20000 MiB of one GPU's memory but the largest GPU has 16384 MiB"
    )
    # A node that does not say how much memory its GPUs have holds no share by memory.
    assert never_fits_reason(ten, [view("unknown", 1, [0])]) is not None
    assert never_fits_reason(Request(gpu_milli=100), [view("cpu", 0, [])]) == (
        "asks for a share of a GPU but no node has one"
    )


@given(
    st.lists(
        st.one_of(
            st.builds(lambda m: Request(gpu_milli=m), st.integers(1, 999)),
            st.builds(lambda g: Request(gpus=g), st.integers(1, 3)),
        ),
        max_size=40,
    ),
    st.sampled_from(["fgd", "best-fit", "first-fit", "worst-fit"]),
)
def test_shares_never_overcommit_a_gpu_and_release_whole(requests, policy):
    from scheduler.policy import WHOLE, Cluster

    nodes = [view("a", 2, [0, 1]), view("b", 4, range(4))]
    cluster = Cluster.of(nodes)
    held: dict[tuple[str, int], int] = {}
    placed = []
    for request in requests:
        cluster.observe(request)
        placement = cluster.place(request, policy)
        if placement is None:
            continue
        cluster.allocate(request, placement)
        placed.append((request, placement))
        for index in placement.gpu_indices:
            key = (placement.node, index)
            held[key] = held.get(key, 0) + (placement.gpu_milli or WHOLE)
            assert held[key] <= WHOLE
        for node in cluster.nodes.values():
            for index in range(node.total_gpus):
                free = dict(node.partial).get(index, WHOLE if index in node.free_gpus else 0)
                assert free == WHOLE - held.get((node.name, index), 0)
    for request, placement in placed:
        cluster.release(request, placement)
    assert all(cluster.nodes[n.name] == n for n in nodes)


def test_fragmentation_counts_the_parts_of_shared_gpus_too_small_to_use():
    from scheduler.fragmentation import Demand, stranded

    demand = Demand()
    for request in [Request(gpus=1)] * 2 + [Request(gpu_milli=500)] * 2:
        demand.observe(request)
    # One GPU whole and one with 300 thousandths free: for a 1-GPU request the 0.3 is
    # lost, for half a GPU too; the whole GPU serves both.
    assert stranded(demand, ("", 1, 8.0, 1024, (300,), 0)) == 0.3
    # With 600 free the half fits; only the 1-GPU requests lose it.
    assert stranded(demand, ("", 1, 8.0, 1024, (600,), 0)) == 0.3
    # No CPU left: nothing fits, everything free is lost.
    assert stranded(demand, ("", 1, 0.0, 1024, (600,), 0)) == 1.6


# fgd's walk over node states ---------------------------------------------------------

MODELS = ("V100", "T4", "P100")


def _varied_nodes(rng):
    """Nodes made from a few templates (so that several share a state) of a few
    classes, some of them drained, not isolating or run by operators, with GPUs of
    known and unknown memory."""
    templates = []
    for _ in range(rng.randint(2, 4)):
        gpus = rng.choice([0, 1, 2, 4, 8])
        cpus = float(rng.choice([8, 16, 32]))
        memory = rng.choice([2**15, 2**16, 2**17])
        templates.append(
            replace(
                view("", gpus, range(gpus), cpus, memory),
                gpu_model=rng.choice(MODELS) if gpus else "",
                isolating=rng.random() < 0.85,
                operators=frozenset({"ann"}) if rng.random() < 0.1 else frozenset(),
                gpu_memory_mb=rng.choice([0, 16384, 32768]) if gpus else 0,
            )
        )
    return [
        replace(
            rng.choice(templates),
            name=f"n{number:02d}",
            drained=rng.random() < 0.1,
            images=frozenset({"env:a"}) if rng.random() < 0.3 else frozenset(),
            datasets=frozenset({"mnist:1"}) if rng.random() < 0.3 else frozenset(),
        )
        for number in range(rng.randint(4, 14))
    ]


def _varied_request(rng):
    kind = rng.random()
    return Request(
        gpus=rng.choice([1, 1, 2, 4, 8]) if kind < 0.5 else 0,
        gpu_milli=rng.choice([250, 500, 700]) if 0.5 <= kind < 0.7 else 0,
        gpu_memory_mb=rng.choice([4096, 20000]) if 0.7 <= kind < 0.8 else 0,
        cpus=float(rng.choice([1, 2, 4, 8])),
        memory_mb=rng.choice([1024, 8192, 30000]),
        gpu_models=frozenset(rng.sample(MODELS, rng.randint(1, 2)))
        if rng.random() < 0.3
        else frozenset(),
        user=rng.choice(["ann", "bob"]),
        trusted=rng.random() < 0.7,
        image=rng.choice(["", "", "env:a"]),
        datasets=frozenset({"mnist:1"}) if rng.random() < 0.2 else frozenset(),
    )


def _states_match_nodes(cluster):
    """The cluster's grouping of states is what its nodes make it."""
    from scheduler.fragmentation import state_key

    with_room = {n.name: state_key(n) for n in cluster.nodes.values() if n.free_gpus or n.partial}
    states = cluster.states
    assert states.key_of == with_room
    assert {k: set(v) for k, v in states.groups.items()} == {
        key: {name for name, k in with_room.items() if k == key} for key in with_room.values()
    }
    assert {c: set(keys) for c, keys in states.by_class.items()} == {
        c: {k for k in states.groups if k[0] == c} for c in {k[0] for k in states.groups}
    }


def test_fgd_walk_decides_as_scoring_every_state_would():
    """The walk by class in the plan's order, with fragmentation measured only for the
    states that lead, chooses the node that scoring every state (and, with locality,
    every node) afresh chooses: as the cluster fills and empties, with a node held back
    (often the one the walk would choose, in a state other nodes share), with nodes
    that do not admit everyone."""
    import random

    from scheduler.policy import DEFAULT_WEIGHTS, Cluster, fits_now

    seen = {"planned": 0, "held back in a shared state": 0, "local": 0, "placed": 0}
    for seed in range(40):
        rng = random.Random(seed)
        cluster = Cluster.of(_varied_nodes(rng))
        placed = []
        for _ in range(60):
            request = _varied_request(rng)
            cluster.observe(request)
            weights = DEFAULT_WEIGHTS if request.image or request.datasets else None
            chosen = cluster._least_fragmenting(request, weights, frozenset())
            exclude = frozenset()
            if chosen is not None and rng.random() < 0.4:
                exclude = frozenset({chosen.name})
                key = cluster.states.key_of.get(chosen.name)
                if key is not None and len(cluster.states.groups[key]) > 1:
                    seen["held back in a shared state"] += 1
            fast = cluster._least_fragmenting(request, weights, exclude)
            scan = cluster._least_fragmenting_by_scan(request, weights, exclude)
            assert (fast and fast.name) == (scan and scan.name), (seed, request, exclude)
            if fast is not None:
                assert fits_now(fast, request) and fast.name not in exclude
            if request.wants_gpu and cluster._class_plan().order(request):
                seen["planned"] += 1
            seen["local"] += weights is not None and fast is not None
            placement = cluster.place(request, "fgd", exclude=exclude)
            if placement is not None:
                cluster.allocate(request, placement)
                placed.append((request, placement))
                seen["placed"] += 1
            if placed and rng.random() < 0.25:
                cluster.release(*placed.pop(rng.randrange(len(placed))))
            _states_match_nodes(cluster)
    assert all(count > 20 for count in seen.values()), seen


def test_fragmentation_remembered_for_states_alike_is_what_they_strand():
    """States that meet the same CPU and memory asks of the mix share one measure: it
    is the fragmentation `stranded` measures for each of them, as the mix is taken
    again (shares by GPU memory joining it) and for GPU models the mix never asked."""
    import random

    from scheduler.fragmentation import Demand, Fragmentation, stranded

    for seed in range(30):
        rng = random.Random(seed)
        demand = Demand()
        measure = Fragmentation(demand)
        versions = set()
        for _ in range(rng.randint(20, 60)):
            demand.observe(replace(_varied_request(rng), gpus=rng.choice([0, 1, 2])))
            measure.current()
            versions.add(demand.version)
            for _ in range(3):
                partial = tuple(sorted(rng.sample(range(1, 1000), rng.randint(0, 2))))
                state = (
                    rng.choice((*MODELS, "", "A100")),
                    rng.randint(0, 4),
                    float(rng.randint(0, 16)),
                    rng.choice([0, 1024, 8192, 8193, 30000, 65536]),
                    partial,
                    rng.choice([0, 16384, 32768]),
                )
                assert measure(state) == stranded(demand, state), (seed, state)
        assert len(versions) > 3
