"""Hostile uploads over the API, with nothing but a user's token: each is refused with
a clear error, and no row names it afterwards."""

from __future__ import annotations

import gzip
import io
import tarfile

from portal.extensions import db
from portal.models import Checkpoint, Dataset, Session
from tests import factories
from tests.api.test_api import code_archive
from tests.api.test_blob_attacks import start_session
from tests.unit.test_archives import long_name_bomb


def tiny_files(count: int) -> bytes:
    """A gzipped tar of `count` empty files beside the entry point."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        entry = tarfile.TarInfo("train.py")
        entry.size = 2
        tar.addfile(entry, io.BytesIO(b"1\n"))
        for n in range(count):
            tar.addfile(tarfile.TarInfo(f"f/{n}"))
    return buffer.getvalue()


def test_code_of_200000_tiny_files_is_refused(client, app):
    headers = factories.headers(factories.token(factories.user("mallory")))
    digest = client.put("/api/v1/code", data=tiny_files(200_000), headers=headers).get_json()[
        "digest"
    ]
    refused = client.post(
        "/api/v1/sessions", json={"entry": "train.py", "code_digest": digest}, headers=headers
    )
    assert refused.status_code == 422
    assert refused.get_json()["error"] == {
        "code": "unsafe_archive",
        "message": "more than 200000 files",
        "details": {},
    }
    assert db.session.scalar(db.select(db.func.count(Session.id))) == 0


def test_a_checkpoint_is_inspected_like_code(client, app, tmp_path):
    headers = factories.headers(factories.token(factories.user("mallory")))
    ident = start_session(client, headers, code_archive({"train.py": "print(1)\n"}))
    path = f"/api/v1/sessions/{ident}/checkpoints"
    for body, status, problem in (
        (b"not an archive", 400, "cannot be read as a gzipped tar"),
        (long_name_bomb(tmp_path).read_bytes(), 422, "a header of 1073741824 bytes"),
        (gzip.compress(b"not a tar " * 1000), 400, "cannot be read as a gzipped tar"),
    ):
        refused = client.put(
            f"{path}/best", data=body, headers=headers, content_type="application/gzip"
        )
        assert refused.status_code == status
        assert problem in refused.get_json()["error"]["message"]
    links = io.BytesIO()
    with tarfile.open(fileobj=links, mode="w:gz") as tar:
        link = tarfile.TarInfo("model/weights")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
    refused = client.put(
        f"{path}/best", data=links.getvalue(), headers=headers, content_type="application/gzip"
    )
    assert (
        refused.status_code == 422 and "outside the tree" in refused.get_json()["error"]["message"]
    )
    assert db.session.scalar(db.select(db.func.count(Checkpoint.id))) == 0
    saved = client.put(
        f"{path}/best",
        data=code_archive({"model/weights": "0.5"}),
        headers=headers,
        content_type="application/gzip",
    )
    assert saved.status_code == 201


def test_a_gigabyte_name_in_a_small_dataset_is_refused(client, app, tmp_path):
    headers = factories.headers(factories.token(factories.user("mallory")))
    refused = client.post(
        "/api/v1/datasets/names/versions",
        data=long_name_bomb(tmp_path).read_bytes(),
        headers=headers,
        content_type="application/gzip",
    )
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "unsafe_archive"
    assert db.session.scalar(db.select(db.func.count(Dataset.id))) == 0


def test_stored_code_has_a_quota_per_user(tmp_path, redis_url, redis):
    import os

    from tests.conftest import build_app

    database = f"sqlite:///{tmp_path / 'quota.db'}"
    app = build_app(tmp_path / "quota", database, redis_url, CODE_QUOTA_BYTES=1_500_000)
    with app.app_context():
        client = app.test_client()
        mallory = factories.headers(factories.token(factories.user("mallory")))
        other = factories.headers(factories.token(factories.user("other")))

        def upload(headers, chunked: bool = False):
            # Hardly compressible: each archive is about 600 kB.
            body = code_archive(
                {"train.py": "print(1)\n", "blob": os.urandom(2**20).hex()[: 2**20]}
            )
            if chunked:  # no Content-Length (as chunked): the store cuts it off at the quota
                return client.put(
                    "/api/v1/code",
                    data=body,
                    headers=headers,
                    environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
                )
            return client.put("/api/v1/code", data=body, headers=headers)

        first, second = upload(mallory), upload(mallory)
        assert first.status_code == 201 and second.status_code == 201
        for refused in (upload(mallory), upload(mallory, chunked=True)):
            assert refused.status_code == 413, refused.get_json()
            error = refused.get_json()["error"]
            assert error["code"] == "quota_exceeded" and "podium rm" in error["message"]
        # Another user's room is their own.
        assert upload(other).status_code == 201
        # A session runs the first archive; removing it frees its room.
        started = client.post(
            "/api/v1/sessions",
            json={"entry": "train.py", "code_digest": first.get_json()["digest"]},
            headers=mallory,
        )
        assert started.status_code == 201
        assert upload(mallory).status_code == 413  # still held, by the session now
        ident = started.get_json()["id"]
        assert client.post(f"/api/v1/sessions/{ident}/stop", headers=mallory).status_code == 200
        assert client.delete(f"/api/v1/sessions/{ident}", headers=mallory).status_code == 204
        assert upload(mallory).status_code == 201
        db.session.remove()
        db.engine.dispose()
