"""The artifact store's deletion rule: a blob goes only when nothing names it and no
upload of it is recent, and removals racing each other delete it at most once."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import event

from portal.extensions import db
from portal.models import Session, SessionStatus
from portal.services import blobs, checkpoints, sessions
from portal.services import datasets as dataset_service
from portal.services.artifacts import ArtifactStore
from tests import factories
from tests.api.test_api import code_archive

# Columns whose name says digest but that name no stored file.
NOT_BLOBS = {"dataset_versions.content_digest"}  # a hash of the files an archive holds


def age_store(app: Flask) -> None:
    """Make every stored blob look uploaded longer ago than the grace period."""
    then = time.time() - 2 * blobs.GRACE.total_seconds()
    for path in Path(app.config["ARTIFACT_ROOT"], "sha256").glob("*/*"):
        os.utime(path, (then, then))


@pytest.fixture
def store(app) -> ArtifactStore:
    return ArtifactStore(app.config["ARTIFACT_ROOT"])


def put(store: ArtifactStore, data: bytes) -> str:
    return store.put(io.BytesIO(data), max_bytes=len(data) + 1)[0]


def ended_session(owner, store: ArtifactStore, checkpoint: bytes | None = None) -> Session:
    run = factories.session(owner)
    if checkpoint is not None:
        checkpoints.save_checkpoint(run, "best", io.BytesIO(checkpoint), store, max_bytes=2**20)
    run.status = SessionStatus.COMPLETED.value
    db.session.commit()
    return run


def test_every_column_that_names_a_file_is_a_reference():
    registered = {f"{c.table.name}.{c.name}" for c in blobs.REFERENCES}
    digest_columns = {
        f"{table.name}.{column.name}"
        for table in db.metadata.sorted_tables
        for column in table.columns
        if "digest" in column.name
    }
    assert digest_columns - NOT_BLOBS == registered


def test_a_recent_upload_survives_release_and_sweep_collects_it_once_old(app, store):
    digest = put(store, b"an upload no row came to name")
    assert blobs.release(store, [digest]) == set()
    assert blobs.sweep(store) == set()
    assert store.exists(digest)
    age_store(app)
    put(store, b"an upload no row came to name")  # uploaded again: the grace starts over
    assert blobs.sweep(store) == set() and store.exists(digest)
    age_store(app)
    assert blobs.sweep(store) == {digest}
    assert not store.exists(digest)


def test_sweep_keeps_what_rows_name_and_asks_the_database_once_per_batch(app, store, monkeypatch):
    monkeypatch.setattr(blobs, "BATCH", 2)
    ada = factories.user("ada")
    code = put(store, b"code")  # the code every factory session runs
    weights = code_archive({"model.bin": "w"})
    ended_session(ada, store, checkpoint=weights)
    unused = {put(store, f"unused {n}".encode()) for n in range(3)}
    age_store(app)
    queries: list[str] = []

    def record(connection, cursor, statement, *args) -> None:
        queries.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        deleted = blobs.sweep(store)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert deleted == unused
    assert store.exists(code) and store.exists(hashlib.sha256(weights).hexdigest())
    assert len(queries) == 3  # five blobs, two per query


@pytest.fixture
def interleave(monkeypatch) -> Callable[[Path, Callable[[], object]], None]:
    """Run an action once, right after the store first looks at a blob's file: the
    moment another request could act before the store deletes the file."""

    def install(path: Path, action: Callable[[], object]) -> None:
        look, fired = Path.stat, list[bool]()

        def stat(self, *args, **kwargs):
            result = look(self, *args, **kwargs)
            if self == path and not fired:
                fired.append(True)
                action()
            return result

        monkeypatch.setattr(Path, "stat", stat)

    return install


def old_blob(store: ArtifactStore, data: bytes) -> str:
    digest = put(store, data)
    os.utime(store.path(digest), (0, 0))
    return digest


def test_an_upload_landing_while_its_bytes_are_deleted_is_kept(tmp_path, interleave):
    store = ArtifactStore(tmp_path)
    data = b"bytes whose uploader has not committed its row yet"
    digest = old_blob(store, data)
    interleave(store.path(digest), lambda: put(store, data))
    assert store.discard(digest, written_before=time.time() - 60) is False
    assert store.path(digest).read_bytes() == data


def test_two_removals_deleting_one_blob_delete_it_once(tmp_path, interleave):
    store = ArtifactStore(tmp_path)
    digest = old_blob(store, b"the last two names of it are going")
    written_before = time.time() - 60
    other: list[bool] = []
    interleave(
        store.path(digest),
        lambda: other.append(store.discard(digest, written_before=written_before)),
    )
    mine = store.discard(digest, written_before=written_before)
    assert sorted([mine, *other]) == [False, True]
    assert not store.exists(digest) and not any(tmp_path.rglob(f"{digest}*"))


def test_a_file_a_dying_removal_left_out_of_place_is_cleared_later(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path)
    digest = old_blob(store, b"its remover was killed halfway")

    def killed(self, *args, **kwargs):
        raise SystemExit("killed")

    with monkeypatch.context() as patched:
        patched.setattr(Path, "unlink", killed)
        with pytest.raises(SystemExit):
            store.discard(digest, written_before=time.time() - 60)
    assert not store.exists(digest) and any(tmp_path.rglob(f"{digest}*"))
    assert store.clear_abandoned(claimed_before=time.time() - 60) == 0  # it may be live
    assert store.clear_abandoned(claimed_before=time.time() + 1) == 1
    assert not any(tmp_path.rglob(f"{digest}*"))


@pytest.fixture
def shared_checkpoint(app, store) -> tuple[str, list[int]]:
    """Two ended sessions whose checkpoints hold the same bytes, uploaded long ago."""
    ada = factories.user("ada")
    weights = code_archive({"model.bin": "weights"})
    runs = [ended_session(ada, store, checkpoint=weights) for _ in range(2)]
    return hashlib.sha256(weights).hexdigest(), [run.id for run in runs]


def remove_together(app: Flask, session_ids: list[int], monkeypatch) -> tuple[list, list]:
    """Remove the sessions from threads of their own, each with its own app context and
    database session, both committing before either checks what is still named: the
    ordering in which both can find the blob unused. Returns (errors, the digests whose
    files some thread deleted, once per deletion)."""
    both_committed = threading.Barrier(len(session_ids), timeout=30)
    check, discard = blobs.referenced, ArtifactStore.discard
    deletions: list[str] = []

    def after_both_commits(digests):
        both_committed.wait()
        return check(digests)

    def counted_discard(store, digest, **kwargs) -> bool:
        deleted = discard(store, digest, **kwargs)
        if deleted:
            deletions.append(digest)
        return deleted

    monkeypatch.setattr(blobs, "referenced", after_both_commits)
    monkeypatch.setattr(ArtifactStore, "discard", counted_discard)
    errors: list[BaseException] = []

    def remove(session_id: int) -> None:
        with app.app_context():
            try:
                store = ArtifactStore(app.config["ARTIFACT_ROOT"])
                sessions.remove_session(db.session.get_one(Session, session_id), store=store)
            except BaseException as exc:
                errors.append(exc)
                both_committed.abort()
            finally:
                db.session.remove()

    db.session.close()  # nothing of this thread's holds the database meanwhile
    threads = [threading.Thread(target=remove, args=(i,)) for i in session_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors, deletions


def test_racing_removals_keep_a_blob_that_a_dataset_still_names(
    app, store, shared_checkpoint, monkeypatch
):
    digest, session_ids = shared_checkpoint
    olga = factories.user("olga")
    dataset_service.push(
        olga,
        "weights",
        io.BytesIO(store.path(digest).read_bytes()),
        store,
        visibility="public",
        team=None,
        description=None,
        max_bytes=2**20,
        max_unpacked_bytes=2**20,
        max_files=10,
    )
    age_store(app)
    assert remove_together(app, session_ids, monkeypatch) == ([], [])
    assert db.session.query(Session).count() == 0
    assert store.exists(digest)


def test_racing_removals_of_the_last_two_names_delete_the_blob_exactly_once(
    app, store, shared_checkpoint, monkeypatch
):
    digest, session_ids = shared_checkpoint
    age_store(app)
    assert remove_together(app, session_ids, monkeypatch) == ([], [digest])
    assert db.session.query(Session).count() == 0
    assert not store.exists(digest)
