from datetime import timedelta

import pytest

from portal import node_work
from portal.extensions import db
from portal.models import Allocation, Node, SessionStatus
from portal.services import nodes
from portal.timeutil import utcnow
from scheduler.loop import Scheduler
from tests import factories


def test_a_pass_places_by_best_fit_with_gpu_indices_and_queues_the_start(app, redis):
    ada = factories.user("ada")
    factories.node("eight", gpus=8)
    factories.node("four", gpus=4)
    first = factories.session(ada, gpus=2)
    second = factories.session(ada, gpus=4)
    third = factories.session(ada, gpus=8)
    placed = Scheduler(app, redis).run_pass()
    assert [(s.ident, p.node, p.gpu_indices) for s, p in placed] == [
        ("ada/1", "four", (0, 1)),
        ("ada/2", "eight", (0, 1, 2, 3)),
    ]
    assert first.state is SessionStatus.SCHEDULED and first.gpu_indices == "0,1"
    assert third.state is SessionStatus.PENDING
    assert third.status_reason == "first in line for 8 GPUs, 1 CPU, 1024 MiB (eight is held for it)"
    assert second.node.name == "eight"
    assert db.session.query(Allocation).count() == 6
    assert [job["id"] for job in node_work.take(redis, "four")] == [f"start-{first.id}"]
    assert [job["id"] for job in node_work.take(redis, "eight")] == [f"start-{second.id}"]


@pytest.mark.parametrize("policy", ["fgd", "best-fit"])
def test_the_recent_demand_keeps_a_scarce_model_for_the_sessions_that_need_it(app, redis, policy):
    """A quarter of the recent sessions could run only on T4s: `fgd` places sessions
    that accept any model on the big node, and the T4 sessions that come after still
    start; best fit fills the small T4 node first and they wait."""
    ada = factories.user("ada")
    factories.node("big", gpus=8, cpus=64, memory_mb=2**18, model="V100M32")
    factories.node("small", gpus=2, cpus=32, memory_mb=2**17, model="T4")
    for _ in range(10):
        for models in ((), (), (), ("T4",)):
            done = factories.session(ada, gpus=1, gpu_models=models)
            done.status = SessionStatus.COMPLETED.value
            done.started_at = utcnow()
    db.session.commit()
    anywhere = [factories.session(ada, gpus=1) for _ in range(8)]
    on_t4 = [factories.session(ada, gpus=1, gpu_models=("T4",)) for _ in range(2)]
    Scheduler(app, redis, policy=policy).run_pass()
    if policy == "fgd":
        assert {s.node.name for s in anywhere} == {"big"}
        assert {s.node.name for s in on_t4} == {"small"}
    else:
        assert on_t4[0].state is SessionStatus.PENDING


def test_a_second_pass_places_nothing_twice(app, redis):
    ada = factories.user("ada")
    factories.node("one", gpus=1)
    factories.session(ada, gpus=1)
    factories.session(ada, gpus=1)
    scheduler = Scheduler(app, redis)
    assert len(scheduler.run_pass()) == 1
    assert scheduler.run_pass() == []
    assert len(node_work.take(redis, "one")) == 1


def test_a_session_that_became_impossible_is_rejected_with_the_reason(app, redis):
    ada = factories.user("ada")
    node, _ = factories.node("gpu", gpus=4)
    run = factories.session(ada, gpus=4)
    node.gpus = node.gpus[:2]  # the node came back with fewer GPUs
    db.session.commit()
    Scheduler(app, redis).run_pass()
    assert run.state is SessionStatus.REJECTED
    assert run.status_reason == (
        "no node could ever run it: it asks for 4 GPUs but the largest node has 2"
    )


def test_a_silent_node_is_lost_with_its_sessions(app, redis):
    ada = factories.user("ada")
    node, _ = factories.node("gone", gpus=1)
    run = factories.session(ada, gpus=1)
    Scheduler(app, redis).run_pass()
    node.last_heartbeat_at = utcnow() - timedelta(seconds=60)
    db.session.commit()
    Scheduler(app, redis).run_pass()
    assert db.session.get(Node, node.id).status == "lost"
    assert run.state is SessionStatus.LOST and "stopped answering" in run.status_reason
    assert db.session.query(Allocation).count() == 0


def test_a_heartbeat_settles_sessions_the_agent_no_longer_runs(app, redis):
    ada = factories.user("ada")
    node, _ = factories.node("n", gpus=0)
    kept, dropped = factories.session(ada), factories.session(ada)
    Scheduler(app, redis).run_pass()
    for run in (kept, dropped):
        run.status = SessionStatus.RUNNING.value
    db.session.commit()
    vanished, ended = nodes.heartbeat(node, {"cpu_percent": 5}, running=[kept.id])
    assert [s.id for s in vanished] == [dropped.id] and ended == []
    assert dropped.state is SessionStatus.LOST and kept.state is SessionStatus.RUNNING
    # The agent still runs `dropped` after all (a network cut): it is told to stop it.
    _, ended = nodes.heartbeat(node, {}, running=[kept.id, dropped.id, 9999])
    assert ended == [dropped.id, 9999]  # 9999: a session the portal does not know
    # Asked to stop, and the stop job was lost (with Redis, say): the heartbeat says it.
    kept.stop_requested = True
    db.session.commit()
    _, ended = nodes.heartbeat(node, {}, running=[kept.id])
    assert ended == [kept.id]


def test_sessions_wanting_gpus_wait_while_their_owner_has_no_credit(app, redis):
    ada = factories.user("ada")
    factories.node("n", gpus=2)
    ada.credit = 0
    db.session.commit()
    gpu, cpu = factories.session(ada, gpus=1), factories.session(ada)
    Scheduler(app, redis).run_pass()
    assert gpu.state is SessionStatus.PENDING
    assert gpu.status_reason == "out of credit (0.00 left): an administrator can grant more"
    assert cpu.state is SessionStatus.SCHEDULED


def test_finishing_charges_the_gpu_hours_used(app, redis):
    from portal.services.lifecycle import finish

    ada = factories.user("ada")
    factories.node("n", gpus=2)
    run = factories.session(ada, gpus=2)
    Scheduler(app, redis).run_pass()
    run.status = SessionStatus.RUNNING.value
    run.started_at = utcnow() - timedelta(minutes=30)
    db.session.commit()
    finish(run, SessionStatus.COMPLETED, exit_code=0)
    assert round(ada.credit, 2) == 99.0


def test_grading_sessions_go_first_and_drained_nodes_take_nothing(app, redis):
    from portal.models import SessionKind

    ada, bob = factories.user("ada"), factories.user("bob")
    factories.node("busy", gpus=1)
    drained, _ = factories.node("drained", gpus=4)
    drained.status = "drained"
    db.session.commit()
    training = factories.session(ada, gpus=1)
    grading = factories.session(bob, gpus=1)
    grading.kind = SessionKind.GRADING.value
    db.session.commit()
    placed = Scheduler(app, redis).run_pass()
    assert [(s.ident, p.node) for s, p in placed] == [(f"grade/{grading.id}", "busy")]
    assert training.state is SessionStatus.PENDING


def test_a_node_holding_the_image_is_preferred(app, redis):
    ada = factories.user("ada")
    factories.node("plain", gpus=1)
    warm, _ = factories.node("warm", gpus=8)
    warm.images = ["podium/base:1"]
    db.session.commit()
    run = factories.session(ada, gpus=1)
    run.image = "podium/base:1"
    db.session.commit()
    assert [p.node for _, p in Scheduler(app, redis).run_pass()] == ["warm"]


def test_a_session_is_placed_once_whatever_two_schedulers_do(app, redis):
    ada = factories.user("ada")
    factories.node("n", gpus=4)
    run = factories.session(ada, gpus=1)
    first, second = Scheduler(app, redis), Scheduler(app, redis)
    node = db.session.query(Node).one()
    from scheduler.policy import Placement

    assert first._record_placement(run, node, Placement("n", (0,)))
    db.session.commit()
    assert not second._record_placement(run, node, Placement("n", (1,)))
    db.session.commit()
    assert [a.gpu_index for a in db.session.query(Allocation)] == [0]


def test_reconciliation_requeues_a_lost_start_and_fails_an_ignored_one(app, redis):
    from portal.node_work import start_job_id

    ada = factories.user("ada")
    factories.node("n", gpus=0)
    lost, ignored = factories.session(ada), factories.session(ada)
    scheduler = Scheduler(app, redis)
    scheduler.run_pass()
    for run in (lost, ignored):
        run.scheduled_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    redis.flushdb()  # Redis lost everything
    # ...but the node had taken the other start, and done it without starting it.
    node_work.push(redis, "n", node_work.START, job_id=start_job_id(ignored.id), session_id=0)
    node_work.take(redis, "n")
    assert node_work.complete(redis, "n", start_job_id(ignored.id), {"started": False})
    scheduler.reconcile()
    assert [job["id"] for job in node_work.take(redis, "n")] == [start_job_id(lost.id)]
    assert lost.state is SessionStatus.SCHEDULED
    assert ignored.state is SessionStatus.FAILED
    assert "took its start but never ran it" in ignored.status_reason


def test_a_session_runs_only_on_the_gpu_models_it_allows(app, redis):
    from portal.errors import ApiError
    from portal.services import sessions as service

    ada = factories.user("ada")
    t4, _ = factories.node("t4-box", gpus=4)
    v100, _ = factories.node("v100-box", gpus=8)
    for node, model in ((t4, "T4"), (v100, "V100M32")):
        for gpu in node.gpus:
            gpu.model = model
    db.session.commit()

    def request(*models):
        return service.SessionRequest(
            entry="train.py", code_digest="0" * 64, gpus=1, memory_mb=1024, gpu_models=models
        )

    run = service.create_session(ada, request("V100M16", "V100M32"))
    assert run.gpu_models == "V100M16|V100M32"
    assert [p.node for _, p in Scheduler(app, redis).run_pass()] == ["v100-box"]
    with pytest.raises(ApiError, match="asks for GPU models A100, which no node has"):
        service.create_session(ada, request("A100"))


def test_a_strangers_code_goes_only_to_a_node_that_runs_it_in_containers(app, redis):
    from portal.errors import ApiError
    from portal.models import Level

    stranger = factories.user("sam", level=Level.USER)
    factories.node("host", cpus=64)  # local processes: the roomiest node, best fit's pick
    with pytest.raises(ApiError) as refused:
        factories.session(stranger)
    assert refused.value.status == 422
    assert "needs a node that runs sessions in containers" in refused.value.message
    factories.node("boxed", runtime="docker", cpus=2)
    run = factories.session(stranger)
    Scheduler(app, redis).run_pass()
    assert run.state is SessionStatus.SCHEDULED and run.node.name == "boxed"


def test_a_node_that_names_its_operators_runs_only_their_sessions(app, redis):
    ada, bob = factories.user("ada"), factories.user("bob")
    factories.node("laptop", operators=["ada"])
    factories.node("shared", runtime="docker", cpus=2)
    mine, theirs = factories.session(ada, cpus=4), factories.session(bob)
    Scheduler(app, redis).run_pass()
    assert mine.node.name == "laptop"
    assert theirs.node.name == "shared"


def test_a_session_whose_only_node_turned_non_isolating_is_rejected(app, redis):
    from portal.models import Level

    stranger = factories.user("sam", level=Level.USER)
    node, _ = factories.node("boxed", runtime="docker")
    run = factories.session(stranger)
    node.runtime = "local"  # the agent came back with the local runtime
    db.session.commit()
    Scheduler(app, redis).run_pass()
    assert run.state is SessionStatus.REJECTED
    assert "needs a node that runs sessions in containers" in run.status_reason


def test_the_leader_collects_stored_files_nothing_uses(app, redis):
    import io
    import os
    import time

    from portal.api.code import artifact_store

    store = artifact_store()
    unused, _ = store.put(io.BytesIO(b"uploaded, never used"), max_bytes=100)
    used, _ = store.put(io.BytesIO(b"a session's code"), max_bytes=100)
    factories.session(factories.user("ada"), code_digest=used)
    hour_ago = time.time() - 3600
    for digest in (unused, used):
        os.utime(store.path(digest), (hour_ago, hour_ago))
    Scheduler(app, redis).sweep_store()
    assert not store.exists(unused)
    assert store.exists(used)


# Shares of GPUs ---------------------------------------------------------------------


def test_shares_of_a_gpu_are_packed_together_and_whole_gpus_stay_whole(app, redis):
    from portal.services.sessions import session_dict

    ada = factories.user("ada")
    factories.node("n", gpus=2, gpu_memory_mb=16384)
    half = factories.session(ada, gpu_milli=500)
    quarter = factories.session(ada, gpu_milli=250)
    by_memory = factories.session(ada, gpu_memory_mb=4096)  # a quarter of 16 GiB
    whole = factories.session(ada, gpus=1)
    late = factories.session(ada, gpu_milli=500)
    Scheduler(app, redis).run_pass()
    assert [s.gpu_indices for s in (half, quarter, by_memory, whole)] == ["0", "0", "0", "1"]
    assert late.state is SessionStatus.PENDING
    assert late.status_reason.startswith("first in line for 0.5 of a GPU")
    held = {(a.session_id, a.gpu_index): a.milli for a in db.session.query(Allocation)}
    assert held == {
        (half.id, 0): 500,
        (quarter.id, 0): 250,
        (by_memory.id, 0): 250,
        (whole.id, 1): 1000,
    }
    shown = session_dict(by_memory)
    assert shown["gpu_share"] == 0.25 and shown["gpu_memory_mb"] == 4096
    assert (session_dict(half)["gpus"], session_dict(half)["gpu_share"]) == (0, 0.5)
    assert (session_dict(whole)["gpus"], session_dict(whole)["gpu_share"]) == (1, None)


def test_a_share_is_charged_as_its_part_of_a_gpu(app, redis):
    from portal.services.lifecycle import finish

    ada = factories.user("ada")
    factories.node("n", gpus=1)
    run = factories.session(ada, gpu_milli=250)
    Scheduler(app, redis).run_pass()
    run.status = SessionStatus.RUNNING.value
    run.started_at = utcnow() - timedelta(minutes=60)
    db.session.commit()
    finish(run, SessionStatus.COMPLETED, exit_code=0)
    assert round(ada.credit, 3) == 99.75


def test_a_scheduler_reading_before_another_committed_cannot_overcommit_a_gpu(
    app, redis, monkeypatch
):
    """Two schedulers (a failover in flight): the second read the GPU as free before the
    first placed 0.6 of it. Its pass finds the GPU held past the whole when it checks
    under the GPUs' lock, and keeps nothing."""
    from scheduler import loop

    ada = factories.user("ada")
    factories.node("n", gpus=1)
    first = factories.session(ada, gpu_milli=600)
    second = factories.session(ada, gpu_milli=600)
    stale = loop.node_views(list(db.session.query(Node)))  # read before the first placed
    db.session.rollback()
    first_scheduler, second_scheduler = Scheduler(app, redis), Scheduler(app, redis)
    first.status_reason = "first"  # only `first` is pending for the first scheduler
    second.status = SessionStatus.STOPPED.value
    db.session.commit()
    assert [s for s, _p in first_scheduler.run_pass()] == [first]
    second.status = SessionStatus.PENDING.value
    db.session.commit()
    monkeypatch.setattr(loop, "node_views", lambda nodes: stale)
    assert second_scheduler.run_pass() == []
    db.session.refresh(second)
    assert second.state is SessionStatus.PENDING
    assert sum(a.milli for a in db.session.query(Allocation)) == 600
    # Without the check, the same pass holds 1.2 of the GPU.
    monkeypatch.setattr(Scheduler, "_check_gpus_held", lambda self, taken: None)
    assert [s for s, _p in second_scheduler.run_pass()] == [second]
    assert sum(a.milli for a in db.session.query(Allocation)) == 1200
