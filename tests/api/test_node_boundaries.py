"""A node host, with exactly what a node is given (its node token, or the join token),
reaches nothing beyond its own work."""

from __future__ import annotations

from portal import node_work
from portal.extensions import db
from portal.models import SessionStatus
from portal.services import metrics
from scheduler.loop import Scheduler
from tests import factories
from tests.api.test_api import code_archive
from tests.conftest import JOIN_TOKEN

REGISTER = "/api/v1/internal/nodes/register"
WORK = "/api/v1/internal/nodes/work"


def registration(name: str, join_token: str = JOIN_TOKEN) -> dict:
    return {"name": name, "cpu_count": 4, "memory_mb": 8192, "join_token": join_token}


def beat(client, secret: str) -> int:
    return client.post(
        "/api/v1/internal/nodes/heartbeat", json={}, headers=factories.headers(secret)
    ).status_code


def test_a_node_is_given_its_token_and_nothing_else(client):
    body = client.post(REGISTER, json=registration("n1")).get_json()
    assert set(body) == {"node_token"}
    assert beat(client, body["node_token"]) == 200


def test_a_node_takes_only_its_own_work_and_answers_only_its_own_jobs(client, app, redis):
    _, mine = factories.node("mine")
    _, theirs = factories.node("theirs")
    job_id = node_work.push(redis, "theirs", node_work.EXEC, session_id=1, command=["id"])
    taken = client.post(WORK, json={"wait": 0}, headers=factories.headers(mine)).get_json()
    assert taken == {"jobs": []}
    forged = client.post(
        f"{WORK}/{job_id}/result",
        json={"result": {"exit_code": 0, "output": "forged"}},
        headers=factories.headers(mine),
    )
    assert forged.status_code == 404
    assert node_work.state(redis, job_id)["state"] == node_work.QUEUED
    taken = client.post(WORK, json={"wait": 0}, headers=factories.headers(theirs)).get_json()
    assert [job["id"] for job in taken["jobs"]] == [job_id]


def test_a_long_poll_wakes_when_work_is_queued(client, app, redis):
    import threading
    import time

    _, secret = factories.node("n")
    threading.Timer(0.3, node_work.push, (redis, "n", node_work.STOP), {"session_id": 7}).start()
    started = time.monotonic()
    taken = client.post(WORK, json={"wait": 10}, headers=factories.headers(secret)).get_json()
    assert [job["session_id"] for job in taken["jobs"]] == [7]
    assert time.monotonic() - started < 5


def test_the_join_token_cannot_take_over_a_registered_node(client):
    first = client.post(REGISTER, json=registration("gpu-1")).get_json()
    again = client.post(REGISTER, json=registration("gpu-1"))
    assert again.status_code == 409
    assert "podium node rm gpu-1" in again.get_json()["error"]["message"]
    assert beat(client, first["node_token"]) == 200
    # The node itself registers again with its own token (an agent restarting).
    renewed = client.post(
        REGISTER,
        json=registration("gpu-1", join_token=""),
        headers=factories.headers(first["node_token"]),
    )
    assert renewed.status_code == 201
    assert beat(client, first["node_token"]) == 401
    assert beat(client, renewed.get_json()["node_token"]) == 200


def test_a_rotated_join_token_is_refused_at_once(client, app):
    admin = factories.headers(factories.token(factories.user("root", admin=True)))
    first = client.post(REGISTER, json=registration("a")).get_json()
    rotated = client.post("/api/v1/nodes/join-token", headers=admin)
    assert rotated.status_code == 201
    new_token = rotated.get_json()["join_token"]
    assert client.post(REGISTER, json=registration("b")).status_code == 401
    assert client.post(REGISTER, json=registration("b", new_token)).status_code == 201
    assert beat(client, first["node_token"]) == 200  # registered nodes keep working
    again = client.post("/api/v1/nodes/join-token", headers=admin).get_json()["join_token"]
    assert client.post(REGISTER, json=registration("c", new_token)).status_code == 401
    assert client.post(REGISTER, json=registration("c", again)).status_code == 201


def test_only_administrators_rotate_the_join_token_or_remove_nodes(client, app):
    factories.node("n")
    user = factories.headers(factories.token(factories.user("ada")))
    assert client.post("/api/v1/nodes/join-token", headers=user).status_code == 403
    assert client.delete("/api/v1/nodes/n", headers=user).status_code == 403


def test_a_removed_node_is_refused_at_once_and_its_sessions_are_lost(client, app, redis):
    admin = factories.headers(factories.token(factories.user("root", admin=True)))
    ada = factories.user("ada")
    _, secret = factories.node("n")
    run = factories.session(ada)
    Scheduler(app, redis).run_pass()
    assert run.state is SessionStatus.SCHEDULED
    removed = client.delete("/api/v1/nodes/n", headers=admin)
    assert removed.status_code == 200 and removed.get_json()["lost"] == ["ada/1"]
    assert beat(client, secret) == 401
    spec = client.get(f"/api/v1/internal/sessions/{run.id}/spec", headers=factories.headers(secret))
    assert spec.status_code == 401
    db.session.refresh(run)
    assert run.state is SessionStatus.LOST
    assert "removed" in run.status_reason
    assert [n["name"] for n in client.get("/api/v1/nodes", headers=admin).get_json()] == []
    # The name may join again, as a new node, with the join token.
    assert client.post(REGISTER, json=registration("n")).status_code == 201


def test_a_node_reads_no_session_placed_elsewhere(client, app, redis):
    ada = factories.user("ada")
    _, own = factories.node("a", cpus=64)
    _, other = factories.node("b", cpus=2)
    run = factories.session(ada, cpus=8)
    Scheduler(app, redis).run_pass()
    assert run.node.name == "a"
    for path in ("spec", "inputs"):
        response = client.get(
            f"/api/v1/internal/sessions/{run.id}/{path}", headers=factories.headers(other)
        )
        assert response.status_code == 404, path
    # Nor writes scalars into it (what the agent reads from TensorBoard files).
    body = {"scalars": {"loss": {"step": [1], "value": [9.0], "wall_time": [1.0]}}}
    forged = client.post(
        f"/api/v1/internal/sessions/{run.id}/scalars", json=body, headers=factories.headers(other)
    )
    assert forged.status_code == 404
    assert metrics.tags(run) == []
    # Nor resource samples; and its own node sends none for GPUs the session lacks.
    samples = {"samples": [{"t": 1, "memory_mb": 1.0}]}
    path = f"/api/v1/internal/sessions/{run.id}/resources"
    assert client.post(path, json=samples, headers=factories.headers(other)).status_code == 404
    alien = {"samples": [{"t": 1, "gpus": [{"index": 0, "utilization_percent": 99}]}]}
    refused = client.post(path, json=alien, headers=factories.headers(own))
    assert (
        refused.status_code == 422 and "not one it holds" in refused.get_json()["error"]["message"]
    )
    assert metrics.tags(run, reserved=True) == []
    assert client.post(path, json=samples, headers=factories.headers(own)).get_json() == {
        "accepted": 1
    }


def test_health_tells_no_database_secret(tmp_path, redis_url):
    from tests.conftest import build_app

    app = build_app(tmp_path / "i", f"sqlite:///{tmp_path / 'podium.db'}", redis_url)
    app.config["SQLALCHEMY_DATABASE_URI"] = "unused"
    with app.app_context():
        from sqlalchemy import create_engine

        # The database moved away: its URL (with a password) is what a driver's error
        # would name.
        db.engines[None] = create_engine(
            "postgresql+psycopg://podium:S3cretPassw0rd@127.0.0.1:9/podium"
        )
        answer = app.test_client().get("/api/v1/health")
    assert answer.status_code == 503
    text = answer.get_data(as_text=True)
    assert answer.get_json()["parts"]["database"] == {"ok": False}
    assert "S3cretPassw0rd" not in text and "127.0.0.1:9" not in text


def test_a_node_fetches_only_what_its_own_sessions_use(client, app, redis):
    ada = factories.user("ada")
    bob_code = code_archive({"train.py": "SECRET = 'bob'\n"})
    _, here = factories.node("a", cpus=64)
    _, elsewhere = factories.node("b", cpus=2)
    headers = factories.headers(factories.token(ada))
    digest = client.put("/api/v1/code", data=bob_code, headers=headers).get_json()["digest"]
    created = client.post(
        "/api/v1/sessions",
        json={"entry": "train.py", "code_digest": digest, "cpus": 8},
        headers=headers,
    )
    assert created.status_code == 201
    Scheduler(app, redis).run_pass()
    fetched = client.get(f"/api/v1/internal/code/{digest}", headers=factories.headers(here))
    assert fetched.status_code == 200 and fetched.data == bob_code
    refused = client.get(f"/api/v1/internal/code/{digest}", headers=factories.headers(elsewhere))
    assert refused.status_code == 404


def test_a_start_taken_by_an_agent_that_restarted_is_queued_again(client, app, redis):
    from datetime import timedelta

    from portal.timeutil import utcnow

    ada = factories.user("ada")
    _, secret = factories.node("n")
    run = factories.session(ada)
    scheduler = Scheduler(app, redis)
    scheduler.run_pass()
    assert [j["id"] for j in node_work.take(redis, "n")] == [f"start-{run.id}"]
    # The agent dies with the start in hand, and comes back (registering again).
    client.post(REGISTER, json=registration("n", join_token=""), headers=factories.headers(secret))
    run.scheduled_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    scheduler.reconcile()
    assert [j["id"] for j in node_work.take(redis, "n")] == [f"start-{run.id}"]
    assert run.state is SessionStatus.SCHEDULED
