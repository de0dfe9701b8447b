"""An ordinary user, with nothing but an API token, tries to delete files that others
use or to learn which files the store holds, by uploading the same bytes."""

from __future__ import annotations

import hashlib

import pytest

from portal.api.code import artifact_store
from portal.extensions import db
from portal.models import Round, Submission
from portal.services import blobs
from tests import factories
from tests.api.test_api import code_archive
from tests.api.test_datasets import push
from tests.competitions.test_competitions_api import create, score_all, submit
from tests.services.test_blobs import age_store


@pytest.fixture
def mallory(app) -> dict[str, str]:
    return factories.headers(factories.token(factories.user("mallory")))


def start_session(client, headers, code: bytes) -> str:
    """Upload code and start a session from it, as `podium run` does; its id."""
    digest = client.put("/api/v1/code", data=code, headers=headers).get_json()["digest"]
    created = client.post(
        "/api/v1/sessions", json={"entry": "train.py", "code_digest": digest}, headers=headers
    )
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"]


def end_and_remove(client, headers, ident: str) -> None:
    assert client.post(f"/api/v1/sessions/{ident}/stop", headers=headers).status_code == 200
    assert client.delete(f"/api/v1/sessions/{ident}", headers=headers).status_code == 204


def test_a_refused_dataset_with_a_rounds_ids_file_leaves_the_round_working(
    app, client, redis, mallory
):
    organiser = factories.headers(factories.token(factories.user("olga")))
    files = factories.competition_files()
    assert create(client, organiser, files=files).status_code == 201
    round_ = db.session.scalar(db.select(Round))
    # The ids file is one test id per line: anyone who has seen the ids can rebuild it.
    ids_file = "\n".join(f"r{i:03d}" for i in range(40)).encode()
    assert hashlib.sha256(ids_file).hexdigest() == round_.ids_digest
    refused = push(client, mallory, "ids", ids_file)
    assert refused.status_code == 400
    age_store(app)
    blobs.sweep(artifact_store())  # what the periodic collection would do later on
    store = artifact_store()
    assert all(store.exists(d) for d in (round_.ids_digest, round_.inputs_digest))
    assert store.exists(round_.labels_digest)
    ann = factories.headers(factories.token(factories.user("ann")))
    submitted = submit(client, ann, factories.predictions(files, 40))
    assert submitted.status_code == 201, submitted.get_json()
    assert submitted.get_json()["status"] == "scoring"
    score_all(app, redis)
    assert db.session.scalar(db.select(Submission.status)) == "scored"


def test_a_checkpoint_with_a_public_datasets_bytes_cannot_take_the_dataset_away(
    app, client, mallory
):
    olga = factories.headers(factories.token(factories.user("olga")))
    archive = code_archive({"train.csv": "1,2\n3,4\n"})
    assert push(client, olga, "mnist", archive, visibility="public").status_code == 201
    ident = start_session(client, mallory, code_archive({"train.py": "print(1)\n"}))
    saved = client.put(f"/api/v1/sessions/{ident}/checkpoints/best", data=archive, headers=mallory)
    assert saved.status_code == 201
    age_store(app)  # long after the upload: only the dataset's version keeps the file
    end_and_remove(client, mallory, ident)
    pulled = client.get("/api/v1/datasets/mnist/versions/1/archive")
    assert pulled.status_code == 200 and pulled.data == archive


def test_code_stays_while_a_session_runs_it_and_goes_with_the_last_one(app, client, mallory):
    code = code_archive({"train.py": "print(2)\n"})
    digest = hashlib.sha256(code).hexdigest()
    first, second = (start_session(client, mallory, code) for _ in range(2))
    age_store(app)
    end_and_remove(client, mallory, first)
    assert artifact_store().exists(digest)
    assert client.head(f"/api/v1/code/{digest}", headers=mallory).status_code == 200
    end_and_remove(client, mallory, second)
    assert not artifact_store().exists(digest)
    assert client.head(f"/api/v1/code/{digest}", headers=mallory).status_code == 404


def test_a_removal_spares_a_recent_upload_until_sweep_finds_it_old(app, client, mallory):
    code = code_archive({"train.py": "print(3)\n"})
    digest = hashlib.sha256(code).hexdigest()
    end_and_remove(client, mallory, start_session(client, mallory, code))
    # The same bytes may be someone's upload whose session is not created yet.
    assert artifact_store().exists(digest)
    assert blobs.sweep(artifact_store()) == set()
    age_store(app)
    assert blobs.sweep(artifact_store()) == {digest}
    assert not artifact_store().exists(digest)


def test_the_store_says_a_file_exists_only_to_the_owner_of_a_session_running_it(
    app, client, mallory
):
    bob = factories.headers(factories.token(factories.user("bob")))
    bobs_code = code_archive({"train.py": "print('bob')\n"})
    start_session(client, bob, bobs_code)
    dataset = code_archive({"data.csv": "1\n"})
    assert push(client, bob, "bobs-data", dataset, visibility="public").status_code == 201
    missing = client.head(f"/api/v1/code/{'0' * 64}", headers=mallory)
    for blob in (bobs_code, dataset):
        probe = client.head(f"/api/v1/code/{hashlib.sha256(blob).hexdigest()}", headers=mallory)
        # A HEAD answer has no body: its headers (the length of the message) must not
        # tell a stored file from a missing one either.
        assert probe.status_code == missing.status_code == 404
        assert dict(probe.headers) == dict(missing.headers)
    mine = code_archive({"train.py": "print('mallory')\n"})
    start_session(client, mallory, mine)
    own = client.head(f"/api/v1/code/{hashlib.sha256(mine).hexdigest()}", headers=mallory)
    assert own.status_code == 200


def test_nobody_starts_a_session_of_code_someone_else_uploaded(app, client, mallory):
    bob = factories.headers(factories.token(factories.user("bob")))
    uploaded = client.put(
        "/api/v1/code", data=code_archive({"train.py": "SECRET = 1\n"}), headers=bob
    ).get_json()["digest"]
    answers = [
        client.post(
            "/api/v1/sessions", json={"entry": "train.py", "code_digest": digest}, headers=mallory
        )
        for digest in (uploaded, "0" * 64)
    ]
    # Bob's code is neither run for Mallory nor told apart from a file that is missing.
    assert [a.status_code for a in answers] == [400, 400]
    assert answers[0].get_json() == answers[1].get_json()
    mine = client.post(
        "/api/v1/sessions", json={"entry": "train.py", "code_digest": uploaded}, headers=bob
    )
    assert mine.status_code == 201
