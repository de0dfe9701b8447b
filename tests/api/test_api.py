import hashlib
import io
import tarfile

from portal.extensions import db
from portal.models import Session
from tests import factories


def code_archive(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_every_api_route_is_in_the_openapi_document(app, client):
    spec = client.get("/api/v1/openapi.json").get_json()
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule.endswith("openapi.json"):
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<int:{argument}>", f"{{{argument}}}")
            path = path.replace(f"<{argument}>", f"{{{argument}}}")
        for method in rule.methods - {"OPTIONS"}:
            if method == "HEAD" and "GET" in rule.methods:
                continue
            assert (path, method) in documented, f"{method} {path} is not documented"
    assert "bearerAuth" in spec["components"]["securitySchemes"]


def test_errors_share_one_envelope(client):
    for response in (
        client.get("/api/v1/sessions"),
        client.get("/api/v1/nowhere"),
        client.post("/api/v1/auth/tokens", json={"username": "x"}),
        client.post("/api/v1/auth/tokens", data="not json", content_type="application/json"),
    ):
        body = response.get_json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message", "details"}
    body = client.post("/api/v1/auth/tokens", json={"username": "x"}).get_json()
    assert body["error"]["message"] == "password: Missing data for required field."


def test_log_in_use_the_token_and_log_out(client, app):
    factories.user("ada")
    wrong = client.post("/api/v1/auth/tokens", json={"username": "ada", "password": "nope"})
    assert wrong.status_code == 401
    assert wrong.get_json()["error"]["message"] == "wrong username or password"
    token = client.post(
        "/api/v1/auth/tokens", json={"username": "ada", "password": "ada-password"}
    ).get_json()["token"]
    headers = factories.headers(token)
    assert client.get("/api/v1/auth/me", headers=headers).get_json()["username"] == "ada"
    assert client.delete("/api/v1/auth/tokens/current", headers=headers).status_code == 204
    refused = client.get("/api/v1/auth/me", headers=headers)
    assert refused.status_code == 401 and "revoked" in refused.get_json()["error"]["message"]


def test_a_session_from_uploaded_code(client, app):
    ada = factories.user("ada")
    headers = factories.headers(factories.token(ada))
    archive = code_archive({"train.py": "print('hi')\n"})
    uploaded = client.put("/api/v1/code", data=archive, headers=headers)
    assert uploaded.status_code == 201
    digest = uploaded.get_json()["digest"]
    assert digest == hashlib.sha256(archive).hexdigest()
    created = client.post(
        "/api/v1/sessions",
        json={"entry": "train.py", "code_digest": digest, "args": "--lr 0.1", "memory_mb": 512},
        headers=headers,
    )
    assert created.status_code == 201, created.get_json()
    assert client.head(f"/api/v1/code/{digest}", headers=headers).status_code == 200
    body = created.get_json()
    assert body["id"] == "ada/1" and body["status"] == "pending"
    assert body["command"] == "python train.py --lr 0.1"
    listed = client.get("/api/v1/sessions", headers=headers).get_json()
    assert [s["id"] for s in listed] == ["ada/1"]


def test_bad_session_requests_change_nothing(client, app):
    ada = factories.user("ada")
    factories.node("small", gpus=1)
    headers = factories.headers(factories.token(ada))
    digest = client.put("/api/v1/code", data=code_archive({"a.py": ""}), headers=headers)
    digest = digest.get_json()["digest"]
    evil = code_archive({"a.py": "", "../evil.py": ""})
    hostile = client.put("/api/v1/code", data=evil, headers=headers).get_json()["digest"]
    cases = [
        ({"entry": "a.py", "code_digest": "0" * 64}, 400, "upload the code archive first"),
        ({"entry": "a.py", "code_digest": digest, "gpus": 3}, 422, "largest node has 1"),
        ({"entry": "a.py", "code_digest": digest, "gpus": 1.5}, 422, "a share of one GPU"),
        ({"entry": "a.py", "code_digest": digest, "gpus": 0.0001}, 422, "in thousandths"),
        ({"entry": "a.py", "code_digest": digest, "gpus": 0.01}, 400, "from 0.05 to 0.999"),
        (
            {"entry": "a.py", "code_digest": digest, "gpus": 0.5, "gpu_memory_mb": 1024},
            400,
            "not several",
        ),
        (
            {"entry": "a.py", "code_digest": digest, "gpu_memory_mb": 10**6},
            422,
            "asks for 1000000 MiB of one GPU's memory but the largest GPU has 16384 MiB",
        ),
        ({"entry": "../a.py", "code_digest": digest}, 400, "relative path"),
        ({"entry": "a.py", "code_digest": digest, "args": "'unclosed"}, 400, "cannot be parsed"),
        ({"entry": "a.py", "code_digest": "short"}, 422, "code_digest"),
        ({"entry": "missing.py", "code_digest": digest}, 400, "the code has no file missing.py"),
        ({"entry": "a.py", "code_digest": hostile}, 422, "../evil.py: a path outside the tree"),
    ]
    for payload, status, message in cases:
        response = client.post("/api/v1/sessions", json=payload, headers=headers)
        assert response.status_code == status, response.get_json()
        assert message in response.get_json()["error"]["message"]
    assert db.session.query(Session).count() == 0


def test_code_over_the_limit_is_refused_and_nothing_is_kept(client, app):
    app.config["MAX_CODE_BYTES"] = 1024
    headers = factories.headers(factories.token(factories.user("ada")))
    response = client.put("/api/v1/code", data=b"x" * 4096, headers=headers)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"
    store = app.config["ARTIFACT_ROOT"]
    import pathlib

    assert not list(pathlib.Path(store).rglob("sha256/*/*"))


def test_another_users_session_is_a_404_everywhere(client, app):
    ada, bob = factories.user("ada"), factories.user("bob")
    factories.session(ada)
    headers = factories.headers(factories.token(bob))
    for method, path in [
        ("GET", "/api/v1/sessions/ada/1"),
        ("GET", "/api/v1/sessions/ada/1/logs"),
        ("GET", "/api/v1/sessions/ada/1/events"),
        ("POST", "/api/v1/sessions/ada/1/stop"),
        ("DELETE", "/api/v1/sessions/ada/1"),
        ("GET", "/api/v1/sessions/ada/1/command"),
    ]:
        response = client.open(path, method=method, headers=headers)
        assert response.status_code == 404, (method, path)
        assert response.get_json()["error"]["message"] == "no session ada/1"


def test_a_session_token_reaches_only_its_own_session(client, app):
    from datetime import timedelta

    from portal.services import auth

    ada = factories.user("ada")
    mine, other = factories.session(ada), factories.session(ada)
    secret = auth.issue_token(ada, ttl=timedelta(hours=1), session_id=mine.id)
    headers = factories.headers(secret)
    event = {"events": [{"tag": "loss", "step": 1, "value": 0.5, "wall_time": 1.0}]}
    assert (
        client.post("/api/v1/sessions/ada/1/events", json=event, headers=headers).status_code == 201
    )
    assert (
        client.post("/api/v1/sessions/ada/2/events", json=event, headers=headers).status_code == 404
    )
    assert client.get("/api/v1/sessions", headers=headers).status_code == 403
    nan = {"events": [{"tag": "loss", "step": 1, "value": "NaN", "wall_time": 1.0}]}
    assert (
        client.post("/api/v1/sessions/ada/1/events", json=nan, headers=headers).status_code == 422
    )
    assert other.id


def test_nodes_register_with_the_join_token_only(client, app):
    payload = {"name": "n1", "cpu_count": 4, "memory_mb": 8192, "join_token": "wrong"}
    assert client.post("/api/v1/internal/nodes/register", json=payload).status_code == 401
    payload["join_token"] = "test-join-token"
    body = client.post("/api/v1/internal/nodes/register", json=payload).get_json()
    # A node token and nothing else: no Redis URL, no queue name, no password.
    assert set(body) == {"node_token"}
    beat = client.post(
        "/api/v1/internal/nodes/heartbeat", json={"sample": {}}, headers=factories.headers("x")
    )
    assert beat.status_code == 401
    beat = client.post(
        "/api/v1/internal/nodes/heartbeat",
        json={"sample": {"cpu_percent": 3}},
        headers=factories.headers(body["node_token"]),
    )
    assert beat.status_code == 200


def test_nodes_are_for_administrators(client, app):
    factories.node("n1", gpus=2)
    ada_headers = factories.headers(factories.token(factories.user("ada")))
    root_headers = factories.headers(factories.token(factories.user("root", admin=True)))
    assert client.get("/api/v1/nodes", headers=ada_headers).status_code == 403
    nodes = client.get("/api/v1/nodes", headers=root_headers).get_json()
    assert [(n["name"], len(n["gpus"])) for n in nodes] == [("n1", 2)]


def test_web_forms_need_their_csrf_token(client, app):
    factories.user("ada")
    refused = client.post("/login", data={"username": "ada", "password": "ada-password"})
    assert refused.status_code == 400
    assert b"CSRF" in refused.data
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    accepted = client.post(
        "/login", data={"username": "ada", "password": "ada-password", "csrf_token": token}
    )
    assert accepted.status_code == 302 and accepted.headers["Location"] == "/"  # home
    assert client.get("/sessions").status_code == 200


def test_administrators_drain_nodes_see_the_queue_and_give_credit(client, app, redis):
    from scheduler.loop import Scheduler

    ada = factories.user("ada")
    root_headers = factories.headers(factories.token(factories.user("root", admin=True)))
    ada_headers = factories.headers(factories.token(ada))
    factories.node("n1", gpus=1)
    waiting = factories.session(ada, gpus=1)
    drained = client.post("/api/v1/nodes/n1/drain", json={}, headers=root_headers)
    assert drained.get_json()["status"] == "drained"
    Scheduler(app, redis).run_pass()
    queue = client.get("/api/v1/nodes/queue", headers=root_headers).get_json()
    assert [(s["id"], s["status"]) for s in queue] == [("ada/1", "pending")]
    assert queue[0]["status_reason"].startswith("first in line for 1 GPU")
    assert (
        client.post(
            "/api/v1/nodes/n1/drain", json={"drained": False}, headers=root_headers
        ).get_json()["status"]
        == "ready"
    )
    Scheduler(app, redis).run_pass()
    assert waiting.status == "scheduled"
    assert client.post("/api/v1/nodes/nope/drain", json={}, headers=root_headers).status_code == 404
    assert client.post("/api/v1/nodes/n1/drain", json={}, headers=ada_headers).status_code == 403

    own = client.get("/api/v1/users/ada/credit", headers=ada_headers).get_json()
    assert (own["username"], own["credit"], own["rates"]) == (
        "ada",
        100.0,
        {"gpu_hour": 1.0, "cpu_hour": 0.0},
    )
    assert client.get("/api/v1/users/root/credit", headers=ada_headers).status_code == 404
    refused = client.post(
        "/api/v1/users/ada/credit/grants", json={"amount": 5}, headers=ada_headers
    )
    assert refused.status_code == 403
    added = client.post(
        "/api/v1/users/ada/credit/grants",
        json={"amount": 5.5, "reason": "for the workshop"},
        headers=root_headers,
    ).get_json()
    assert (added["kind"], added["amount"], added["balance_after"]) == ("grant", 5.5, 105.5)
    assert added["by"] == "root" and added["reason"] == "for the workshop"
    for bad_amount in ("lots", -3, 0, 1e12, True, None):
        bad = client.post(
            "/api/v1/users/ada/credit/grants", json={"amount": bad_amount}, headers=root_headers
        )
        assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_input"
    nobody = client.post(
        "/api/v1/users/nobody/credit/grants", json={"amount": 1}, headers=root_headers
    )
    assert nobody.status_code == 404
    ledger = client.get("/api/v1/users/ada/credit/ledger", headers=ada_headers).get_json()
    assert [(e["kind"], e["amount"]) for e in ledger] == [("grant", 5.5)]
    assert client.get("/api/v1/users/root/credit/ledger", headers=ada_headers).status_code == 404


def test_out_of_range_numbers_are_refused_not_crashed_on(client, app):
    ada = factories.user("ada")
    headers = factories.headers(factories.token(ada))
    factories.session(ada)
    huge = "99999999999999999999999"
    for path in (
        f"/api/v1/sessions/ada/{huge}",
        f"/api/v1/sessions/ada/1/logs?after={huge}",
        f"/api/v1/sessions/ada/1/events?after={huge}",
    ):
        response = client.get(path, headers=headers)
        assert response.status_code in (404, 422), path
        assert set(response.get_json()) == {"error"}
    event = {"events": [{"tag": "x", "step": 10**30, "value": 1.0, "wall_time": 1.0}]}
    assert (
        client.post("/api/v1/sessions/ada/1/events", json=event, headers=headers).status_code == 422
    )
    payload = {
        "name": "n",
        "cpu_count": 4,
        "memory_mb": 1024,
        "join_token": "test-join-token",
        "gpus": [{"index": 0}, {"index": 0}],
    }
    refused = client.post("/api/v1/internal/nodes/register", json=payload)
    assert refused.status_code == 422
    assert refused.get_json()["error"]["message"] == "gpus: two GPUs have the same index"


def test_removing_a_session_keeps_files_others_still_use(client, app):
    from portal.api.code import artifact_store
    from tests.services.test_blobs import age_store

    ada = factories.user("ada")
    headers = factories.headers(factories.token(ada))
    first, second = factories.session(ada), factories.session(ada)
    blob = code_archive({"model.bin": "weights"})
    for number in (1, 2):
        saved = client.put(
            f"/api/v1/sessions/ada/{number}/checkpoints/best", data=blob, headers=headers
        )
        assert saved.status_code == 201
    for run in (first, second):
        run.status = "completed"
    db.session.commit()
    assert client.delete("/api/v1/sessions/ada/2", headers=headers).status_code == 204
    kept = client.get("/api/v1/sessions/ada/1/checkpoints/best", headers=headers)
    assert kept.status_code == 200 and kept.data == blob
    age_store(app)  # past the grace an upload of the same bytes would have
    assert client.delete("/api/v1/sessions/ada/1", headers=headers).status_code == 204
    assert not artifact_store().exists(hashlib.sha256(blob).hexdigest())
