from datetime import timedelta

from rq import Queue

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
    assert "waiting for a node with 8 free GPUs" in third.status_reason
    assert second.node.name == "eight"
    assert db.session.query(Allocation).count() == 6
    assert Queue("node.four", connection=redis).job_ids == [f"start-{first.id}"]
    assert Queue("node.eight", connection=redis).job_ids == [f"start-{second.id}"]


def test_a_second_pass_places_nothing_twice(app, redis):
    ada = factories.user("ada")
    factories.node("one", gpus=1)
    factories.session(ada, gpus=1)
    factories.session(ada, gpus=1)
    scheduler = Scheduler(app, redis)
    assert len(scheduler.run_pass()) == 1
    assert scheduler.run_pass() == []
    assert Queue("node.one", connection=redis).count == 1


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
    vanished = nodes.heartbeat(node, {"cpu_percent": 5}, running=[kept.id])
    assert [s.id for s in vanished] == [dropped.id]
    assert dropped.state is SessionStatus.LOST and kept.state is SessionStatus.RUNNING
