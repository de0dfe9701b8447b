"""Serving (`podium serve`) and predicting a file (`podium infer`) through the API: the
replicas are played by a thread that polls and answers as the SDK does, with their own
session tokens; the predictions go through the real Redis queue."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from portal import keys
from portal.extensions import db
from portal.models import Checkpoint, Server, Session, SessionStatus
from portal.services import auth, serving
from portal.services.lifecycle import finish, mark_running
from scheduler.loop import Scheduler
from tests import factories

ROWS = {"rows": [["a", 1, 2], ["b", 3, 4]]}


@pytest.fixture
def served(app, client, redis):
    """ada's session ada/1 with two checkpoints, served as `ada-1` by one replica."""
    ada = factories.user("ada")
    factories.node("n1", cpus=8)
    source = factories.session(ada)
    finish(source, SessionStatus.COMPLETED, "exit code 0", exit_code=0)
    for name in ("1", "2"):
        db.session.add(Checkpoint(session_id=source.id, name=name, digest="0" * 64, size=1))
    db.session.commit()
    secret = factories.token(ada)
    answer = client.post(
        "/api/v1/serve",
        json={"session": "ada/1", "timeout_s": 5},
        headers=factories.headers(secret),
    )
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    server = db.session.scalar(db.select(Server).where(Server.name == body["name"]))
    assert server is not None
    [replica] = serving.replicas(server)
    Scheduler(app, redis).run_pass()
    assert mark_running(replica), replica.status_reason
    db.session.commit()
    replica_token = auth.issue_token(ada, ttl=timedelta(hours=1), session_id=replica.id)
    return {
        "owner": ada,
        "headers": factories.headers(secret),
        "server": server,
        "replica": replica,
        "replica_headers": factories.headers(replica_token),
        "body": body,
    }


def answer_in_thread(app, served, reply) -> threading.Thread:
    """A replica: one poll, then its answers to whatever came (`reply(request)`)."""
    replica = served["replica"]
    path = f"/api/v1/sessions/{replica.ident}/serve"

    def work():
        with app.app_context():
            poller = app.test_client()
            found = poller.get(path + "/next?wait=5", headers=served["replica_headers"])
            assert found.status_code == 200, found.get_json()
            replies = [reply(r) for r in found.get_json()["requests"]]
            sent = poller.post(
                path + "/replies", json={"replies": replies}, headers=served["replica_headers"]
            )
            assert sent.status_code == 200, sent.get_json()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_a_served_model_answers_through_a_replica(app, client, redis, served):
    body, replica = served["body"], served["replica"]
    assert body["name"] == "ada-1" and body["checkpoint"] == "2"  # its last
    assert body["predict"] == "/api/v1/serve/ada-1/predict"
    assert replica.mode == "serve" and replica.forked_from == "ada/1"
    assert replica.resume_checkpoint == "2" and replica.gpus == 0
    predict = "/api/v1/serve/ada-1/predict"
    # No replica has asked for requests yet: a clear 503, and nothing queued.
    early = client.post(predict, json=ROWS, headers=served["headers"])
    assert early.status_code == 503
    assert early.get_json()["error"] == {
        "code": "not_ready",
        "message": "no replica of ada-1 is ready yet: try again shortly",
        "details": {},
    }
    assert redis.llen(keys.serve_queue(served["server"].id)) == 0
    # The replica's first poll makes it ready; then a request goes through it.
    first = client.get(
        f"/api/v1/sessions/{replica.ident}/serve/next?wait=0", headers=served["replica_headers"]
    )
    assert first.get_json() == {"requests": [], "stop": False}
    db.session.refresh(replica)
    assert replica.served_since is not None
    seen = []

    def reply(request):
        seen.append(request["body"])
        return {"id": request["id"], "predictions": {"a": 7, "b": 9}}

    worker = answer_in_thread(app, served, reply)
    answer = client.post(predict, json=ROWS, headers=served["headers"])
    worker.join(10)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"predictions": {"a": 7, "b": 9}}
    assert seen == [ROWS]
    # The model's infer raised: the caller is told so (422), the replica goes on.
    worker = answer_in_thread(
        app, served, lambda r: {"id": r["id"], "error": "ValueError: bad pixels"}
    )
    failed = client.post(predict, json=ROWS, headers=served["headers"])
    worker.join(10)
    assert failed.status_code == 422
    assert failed.get_json()["error"]["message"] == (
        "the model's infer failed: ValueError: bad pixels"
    )
    stats = client.get("/api/v1/serve/ada-1", headers=served["headers"]).get_json()["stats"]
    assert (stats["requests"], stats["answered"], stats["errors"], stats["refused"]) == (2, 1, 1, 1)
    assert stats["latency_ms_p50"] is not None and stats["ready_replicas"] == 1
    # The replica's page counts them too.
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    client.post("/login", data={"username": "ada", "password": "ada-password", "csrf_token": token})
    shown = client.get(f"/sessions/{replica.ident}").get_data(as_text=True)
    assert "Serving ada-1" in shown and "POST /api/v1/serve/ada-1/predict" in shown
    assert "2: 1 answered, 1 errors, 0 timed out, 1 refused while none was ready" in shown
    assert f"p50 {stats['latency_ms_p50']:.1f} ms" in shown


@pytest.mark.parametrize(
    ("data", "says", "status"),
    [
        (b"{not json", "the body is not JSON", 400),
        (b"[1, 2]", "the body is a JSON object", 400),
        (b'{"rows": []}', "give rows", 400),
        (b'{"rows": [["a", 1], ["b"]]}', "rows[1] has 1 values, the first 2", 400),
        (b'{"rows": [["a", {"x": 1}]]}', "rows[0] holds strings and numbers only", 400),
        (b'{"csv": "' + b"x" * (1024 * 1024) + b'"}', "the body is over 1048576 bytes", 413),
    ],
)
def test_a_bad_request_is_refused_and_queues_nothing(client, redis, served, data, says, status):
    answer = client.post(
        "/api/v1/serve/ada-1/predict",
        data=data,
        content_type="application/json",
        headers=served["headers"],
    )
    assert answer.status_code == status
    assert says in answer.get_json()["error"]["message"]
    assert redis.llen(keys.serve_queue(served["server"].id)) == 0


def test_a_request_nobody_answers_times_out(app, client, redis, served):
    served["server"].timeout_s = 1
    db.session.commit()
    redis.hset(keys.serve_ready(served["server"].id), str(served["replica"].id), time.time())
    started = time.monotonic()
    answer = client.post("/api/v1/serve/ada-1/predict", json=ROWS, headers=served["headers"])
    assert answer.status_code == 504
    assert answer.get_json()["error"]["message"] == "no replica of ada-1 answered within 1 s"
    assert time.monotonic() - started < 5
    # A replica that comes later skips it: its caller is gone.
    time.sleep(1.1)
    late = client.get(
        f"/api/v1/sessions/{served['replica'].ident}/serve/next?wait=0",
        headers=served["replica_headers"],
    )
    assert late.get_json()["requests"] == []


def test_who_may_call_what(app, client, redis, served):
    bob = factories.user("bob")
    bob_headers = factories.headers(factories.token(bob))
    replica = served["replica"]
    # Another user meets nothing; a session's token cannot predict.
    assert (
        client.post("/api/v1/serve/ada-1/predict", json=ROWS, headers=bob_headers).status_code
        == 404
    )
    assert client.get("/api/v1/serve/ada-1", headers=bob_headers).status_code == 404
    assert (
        client.post(
            "/api/v1/serve/ada-1/predict", json=ROWS, headers=served["replica_headers"]
        ).status_code
        == 403
    )
    # Only the replica's own program takes its requests: not its owner, not another
    # session of hers.
    path = f"/api/v1/sessions/{replica.ident}/serve/next?wait=0"
    assert client.get(path, headers=served["headers"]).status_code == 403
    other = factories.session(served["owner"])
    other_token = auth.issue_token(served["owner"], ttl=timedelta(hours=1), session_id=other.id)
    assert client.get(path, headers=factories.headers(other_token)).status_code == 404
    assert client.post("/api/v1/serve/ada-1/stop", headers=bob_headers).status_code == 404


def test_a_crashed_replica_is_restarted_and_a_broken_model_gives_up(app, client, redis, served):
    server, replica = served["server"], served["replica"]
    finish(replica, SessionStatus.FAILED, "exit code 1", exit_code=1)
    assert serving.advance_all(redis) == 1
    db.session.refresh(server)
    [ended, restarted] = serving.replicas(server)
    assert ended.id == replica.id and restarted.state is SessionStatus.PENDING
    assert restarted.mode == "serve" and restarted.resume_checkpoint == "2"
    assert server.restarts == 1
    assert server.status_reason == f"restarted a replica: {replica.ident} failed: exit code 1"
    # Never ready, again and again: the server gives up with the last reason.
    for _ in range(serving.FAILURES_BEFORE_GIVING_UP - 1):
        latest = serving.replicas(server)[-1]
        finish(latest, SessionStatus.FAILED, "ImportError: no module named torch", exit_code=1)
        serving.advance_all(redis)
    db.session.refresh(server)
    assert server.status == "failed"
    assert server.status_reason.startswith("its replicas ended 4 times before any was ready")
    assert server.status_reason.endswith("failed: ImportError: no module named torch")
    gone = client.post("/api/v1/serve/ada-1/predict", json=ROWS, headers=served["headers"])
    assert gone.status_code == 503 and "ada-1 is failed" in gone.get_json()["error"]["message"]


def test_stopping_a_server_stops_its_replicas(app, client, redis, served):
    answer = client.post("/api/v1/serve/ada-1/stop", headers=served["headers"])
    assert answer.status_code == 200 and answer.get_json()["status"] == "stopped"
    replica = served["replica"]
    db.session.refresh(replica)
    assert replica.stop_requested
    polled = client.get(
        f"/api/v1/sessions/{replica.ident}/serve/next?wait=0", headers=served["replica_headers"]
    )
    assert polled.get_json() == {"requests": [], "stop": True}
    assert serving.advance_all(redis) == 0  # nothing restarted
    assert client.post("/api/v1/serve/ada-1/stop", headers=served["headers"]).status_code == 409


def test_infer_predicts_a_file_in_a_session_of_its_own(app, client, redis, served):
    ada = served["owner"]
    answer = client.post(
        "/api/v1/sessions/ada/1/infer?checkpoint=1",
        data=b"id,x\na,1\n",
        content_type="application/octet-stream",
        headers=served["headers"],
    )
    assert answer.status_code == 201, answer.get_json()
    ident = answer.get_json()["id"]
    session = db.session.scalar(
        db.select(Session).where(Session.number == int(ident.split("/")[1]))
    )
    assert session is not None and session.mode == "infer" and session.resume_checkpoint == "1"
    token = factories.headers(auth.issue_token(ada, ttl=timedelta(hours=1), session_id=session.id))
    assert client.get(f"/api/v1/sessions/{ident}/input", headers=token).data == b"id,x\na,1\n"
    early = client.get(f"/api/v1/sessions/{ident}/predictions", headers=served["headers"])
    assert early.status_code == 404
    # Only its own program uploads its predictions.
    refused = client.put(
        f"/api/v1/sessions/{ident}/predictions", data=b"x", headers=served["headers"]
    )
    assert refused.status_code == 403
    stored = client.put(
        f"/api/v1/sessions/{ident}/predictions", data=b"id,prediction\na,3\n", headers=token
    )
    assert stored.status_code == 201
    got = client.get(f"/api/v1/sessions/{ident}/predictions", headers=served["headers"])
    assert got.data == b"id,prediction\na,3\n"
    bob = factories.headers(factories.token(factories.user("bob")))
    assert client.get(f"/api/v1/sessions/{ident}/predictions", headers=bob).status_code == 404
    missing = client.post(
        "/api/v1/sessions/ada/1/infer?checkpoint=9",
        data=b"id,x\n",
        content_type="application/octet-stream",
        headers=served["headers"],
    )
    assert missing.status_code == 404
    assert missing.get_json()["error"]["message"] == "session ada/1 has no checkpoint '9'"
