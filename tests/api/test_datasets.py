"""Datasets over the API: versions, immutability, and who sees what."""

import pytest

from portal.services import teams
from tests import factories
from tests.api.test_api import code_archive

ROLES = ("owner", "member", "other", "anonymous", "admin")


@pytest.fixture
def people(client, app):
    owner, member = factories.user("olga"), factories.user("mia")
    other, admin = factories.user("otto"), factories.user("root", admin=True)
    team = teams.create(owner, "vision")
    teams.invite(owner, team, "mia")
    teams.accept(member, "vision")
    headers = {
        name: factories.headers(factories.token(user))
        for name, user in (("owner", owner), ("member", member), ("other", other), ("admin", admin))
    }
    headers["anonymous"] = {}
    return headers


def push(client, headers, name, files, **query):
    # An archive's bytes carry the time it was packed: tests keep the bytes they send.
    data = files if isinstance(files, bytes) else code_archive(files)
    return client.post(
        f"/api/v1/datasets/{name}/versions",
        data=data,
        headers=headers,
        query_string=query,
    )


def test_versions_are_made_only_by_new_content_and_never_change(client, people):
    original = code_archive({"train.csv": "1,2\n"})
    first = push(client, people["owner"], "mnist", original, visibility="public")
    assert first.status_code == 201 and first.get_json()["version"]["number"] == 1
    again = push(client, people["owner"], "mnist", {"train.csv": "1,2\n"})
    assert again.get_json()["created"] is False
    assert again.get_json()["version"]["number"] == 1
    second = push(client, people["owner"], "mnist", {"train.csv": "1,2\n3,4\n"})
    assert second.get_json()["version"]["number"] == 2
    one = client.get("/api/v1/datasets/mnist/versions/1/archive")
    assert one.status_code == 200 and one.data == original
    listed = client.get("/api/v1/datasets").get_json()
    assert [(d["name"], [v["number"] for v in d["versions"]]) for d in listed] == [
        ("mnist", [1, 2])
    ]


def test_a_hostile_upload_is_refused_and_leaves_no_version(client, app, people):
    refused = push(client, people["owner"], "evil", {"../../etc/cron.d/x": "boom"})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["message"] == "../../etc/cron.d/x: a path outside the tree"
    assert client.get("/api/v1/datasets/evil", headers=people["owner"]).status_code == 404
    from pathlib import Path

    from portal.api.code import artifact_store
    from portal.services import blobs
    from tests.services.test_blobs import age_store

    age_store(app)  # its bytes wait out the grace of uploads, then the sweep takes them
    blobs.sweep(artifact_store())
    assert not list(Path(app.config["ARTIFACT_ROOT"]).rglob("sha256/*/*"))


def bomb(unpacked: int) -> bytes:
    """A gzipped tar of one file of zeros: about a thousandth of its unpacked size."""
    import io
    import tarfile

    class Zeros(io.RawIOBase):
        def __init__(self, size: int):
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = unpacked
        tar.addfile(info, io.BufferedReader(Zeros(unpacked)))
    return out.getvalue()


def test_an_archive_that_expands_absurdly_is_refused(client, app, people):
    data = bomb(256 * 2**20)  # a few hundred kB that unpack to 256 MiB
    refused = push(client, people["owner"], "zeros", data)
    assert refused.status_code == 422, refused.get_json()
    assert "refused as a decompression bomb" in refused.get_json()["error"]["message"]
    assert client.get("/api/v1/datasets/zeros", headers=people["owner"]).status_code == 404
    app.config["MAX_EXPANSION_RATIO"] = 10_000.0  # a site that wants it anyway
    assert push(client, people["owner"], "zeros", data).status_code == 201


EXPECTED = {
    # visibility: roles that may read
    "public": {"owner", "member", "other", "anonymous", "admin"},
    "team": {"owner", "member", "admin"},
    "private": {"owner", "admin"},
}


@pytest.mark.parametrize("visibility", ["public", "team", "private"])
def test_the_visibility_matrix_over_every_dataset_route(client, people, visibility):
    query = {"team": "vision"} if visibility == "team" else {"visibility": visibility}
    assert push(client, people["owner"], "data", {"a.txt": "a"}, **query).status_code == 201
    for role in ROLES:
        readers = EXPECTED[visibility]
        headers = people[role]
        status = 200 if role in readers else 404
        listed = [d["name"] for d in client.get("/api/v1/datasets", headers=headers).get_json()]
        assert ("data" in listed) == (role in readers), role
        for path in (
            "/api/v1/datasets/data",
            "/api/v1/datasets/data/versions/1",
            "/api/v1/datasets/data/versions/1/archive",
        ):
            assert client.get(path, headers=headers).status_code == status, (role, path)
        changing = {"owner": 201, "admin": 201, "anonymous": 401}.get(
            role, 403 if role in readers else 409
        )
        pushed = push(client, headers, "data", {"b.txt": role})
        assert pushed.status_code == changing, (role, pushed.get_json())
        removing = {"owner": None, "admin": None, "anonymous": 401}.get(
            role, 403 if role in readers else 404
        )
        if removing:
            response = client.delete("/api/v1/datasets/data/versions/1", headers=headers)
            assert response.status_code == removing, role
    assert (
        client.delete("/api/v1/datasets/data/versions/1", headers=people["admin"]).status_code
        == 204
    )
    assert client.delete("/api/v1/datasets/data", headers=people["owner"]).status_code == 204
    assert client.get("/api/v1/datasets/data", headers=people["owner"]).status_code == 404


def test_teammates_see_and_fork_each_others_sessions_and_others_get_404(client, app, people):
    from portal.extensions import db
    from portal.models import User

    olga = db.session.query(User).filter_by(username="olga").one()
    run = factories.session(olga)
    blob = code_archive({"model.bin": "w"})
    saved = client.put(
        "/api/v1/sessions/olga/1/checkpoints/best", data=blob, headers=people["owner"]
    )
    assert saved.status_code == 201
    for path in ("", "/logs", "/events", "/command", "/checkpoints"):
        assert (
            client.get(f"/api/v1/sessions/olga/1{path}", headers=people["member"]).status_code
            == 200
        ), path
        assert (
            client.get(f"/api/v1/sessions/olga/1{path}", headers=people["other"]).status_code == 404
        ), path
    stop = client.post("/api/v1/sessions/olga/1/stop", headers=people["member"])
    assert stop.status_code == 403
    assert stop.get_json()["error"]["message"] == "only olga may change olga/1"
    forked = client.post(
        "/api/v1/sessions/olga/1/fork",
        json={"args": "--lr 0.5", "checkpoint": "best"},
        headers=people["member"],
    )
    assert forked.status_code == 201, forked.get_json()
    body = forked.get_json()
    assert body["id"] == "mia/1" and body["args"] == "--lr 0.5"
    assert body["forked_from"] == "olga/1" and body["resume_checkpoint"] == "best"
    copied = client.get("/api/v1/sessions/mia/1/checkpoints/best", headers=people["member"])
    assert copied.data == blob
    refused = client.post("/api/v1/sessions/olga/1/fork", json={}, headers=people["other"])
    assert refused.status_code == 404
    assert run.status == "pending"


def test_a_sessions_only_dataset_is_mounted_but_never_leaves(client, app, people):
    """A round marks its training data sessions-only: every route that would hand its
    bytes (or a session's copy of them) to anyone but its owner refuses, and a spec that
    is refused marks nothing."""
    import hashlib
    import io
    import json
    from datetime import timedelta

    from portal.extensions import db
    from portal.models import Checkpoint, Dataset, User
    from portal.services import auth
    from portal.services.sessions import SessionRequest, create_session

    assert (
        push(client, people["owner"], "secret", {"a.csv": "1"}, visibility="public").status_code
        == 201
    )

    def compete(slug, **round_fields):
        spec = factories.competition_spec(slug, **round_fields)
        data = {"spec": json.dumps(spec)}
        data.update({n: (io.BytesIO(b), n) for n, b in factories.competition_files().items()})
        return client.post(
            "/api/v1/competitions",
            data=data,
            headers=people["owner"],
            content_type="multipart/form-data",
        )

    refused = compete("nodata", dataset_sessions_only=True)  # no dataset named
    assert (
        refused.status_code == 422
        and "needs the round's dataset" in refused.get_json()["error"]["message"]
    )
    broken = compete("broken", dataset="secret:1", dataset_sessions_only=True, metric="nope")
    assert broken.status_code == 422
    assert (
        db.session.scalar(db.select(Dataset.sessions_only).where(Dataset.name == "secret")) is False
    )
    assert compete("vault", dataset="secret:1", dataset_sessions_only=True).status_code == 201

    archive = "/api/v1/datasets/secret/versions/1/archive"
    for role in ROLES:
        shown = client.get("/api/v1/datasets/secret", headers=people[role])
        assert shown.status_code == 200 and shown.get_json()["sessions_only"] is True
        pulled = client.get(archive, headers=people[role])
        if role in ("owner", "admin"):
            assert pulled.status_code == 200, role
        else:
            assert pulled.status_code == 403, role
            assert pulled.get_json()["error"]["code"] == "sessions_only"

    # A participant's session mounts it; what could carry it out is refused.
    otto = db.session.scalar(db.select(User).where(User.username == "otto"))
    factories.node("n", runtime="docker")
    run = create_session(
        otto,
        SessionRequest(
            entry="train.py", code_digest=hashlib.sha256(b"c").hexdigest(), datasets=("secret",)
        ),
        redis=None,
    )
    from portal.api.code import artifact_store

    digest, size = artifact_store().put(io.BytesIO(b"weights"), max_bytes=1024)
    db.session.add(Checkpoint(session_id=run.id, name="final", digest=digest, size=size))
    db.session.commit()
    path = f"/api/v1/sessions/{run.ident}"
    download = client.get(f"{path}/checkpoints/final", headers=people["other"])
    assert download.status_code == 403 and download.get_json()["error"]["code"] == "sessions_only"
    listed = client.get(f"{path}/checkpoints", headers=people["other"])
    assert listed.status_code == 200  # that it has one is no secret
    command = client.post(
        f"{path}/exec", json={"command": ["cat", "/data/secret/a.csv"]}, headers=people["other"]
    )
    assert command.status_code == 403 and command.get_json()["error"]["code"] == "sessions_only"
    # The session itself (its SDK token) still loads it: that stays on the platform.
    inside = auth.issue_token(otto, ttl=timedelta(hours=1), session_id=run.id)
    loaded = client.get(f"{path}/checkpoints/final", headers=factories.headers(inside))
    assert loaded.status_code == 200 and loaded.data == b"weights"


def test_member_names_that_are_not_utf8_are_refused(client, people):
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", encoding="utf-8", errors="surrogateescape") as tar:
        info = tarfile.TarInfo(b"caf\xe9.csv".decode("utf-8", "surrogateescape"))
        info.size = 4
        tar.addfile(info, io.BytesIO(b"1,2\n"))
    refused = push(client, people["owner"], "latin", out.getvalue())
    assert refused.status_code == 422, refused.get_json()
    assert "not UTF-8" in refused.get_json()["error"]["message"]
    assert client.get("/api/v1/datasets/latin", headers=people["owner"]).status_code == 404
