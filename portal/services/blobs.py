"""What the artifact store must keep, and the one way to delete what it need not.

A blob is shared by content: a user's checkpoint may hold the same bytes as someone
else's dataset or a round's ids file. So a blob is deleted only when no row in any
table of `REFERENCES` names it, and only through `release` (right after a removal) or
`sweep` (periodically, for uploads nothing ever came to name).

Uploads racing removals. An upload stores its blob first and commits the row naming
it afterwards, so for a moment a blob that is about to be used has no reference. Every
`ArtifactStore.put` renames a freshly written file into place, even over the same
bytes, so the file's mtime is the time of its latest upload; a blob written within
`GRACE` is never deleted, and the row naming it has that long to commit.
`ArtifactStore.discard` reads the mtime again after taking the file out of place, so an
upload that lands between our reference check and the deletion is seen and kept.

Removals racing removals. Each removal commits the deletion of its rows, then asks
which of their digests are still named, in a statement that starts after its own
commit and sees every commit made before it started (PostgreSQL's default, read
committed; Python's SQLite driver reads outside any transaction until something is
written). A row that keeps the blob and is not being removed is committed and stays,
so every such check sees it and no removal deletes the blob. When two removals take
away the last two references, each sees at least its own deletion; the one whose
check runs later also sees the other's (the other committed before it checked), so at
least one of them finds the blob unused. Both may, and then both call `discard`: it
renames the file away before deleting it, and only one rename can succeed, so the
blob is deleted exactly once and the other call finds nothing to do.

What this does not cover: a row that starts naming a blob it did not upload (a fork
copying a checkpoint, a session run from code uploaded long ago) relies on another
reference existing until its commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from itertools import islice

from sqlalchemy import select, union

from portal.extensions import db
from portal.models import (
    Checkpoint,
    DatasetVersion,
    Reproduction,
    Round,
    Search,
    Session,
    Submission,
)
from portal.services.artifacts import DIGEST_PATTERN, ArtifactStore

log = logging.getLogger(__name__)

# Every column that names a blob. A column missing here has its files deleted under
# it; tests/services/test_blobs.py fails on any *digest column that is not classified.
REFERENCES = (
    Session.code_digest,
    Session.input_digest,
    Session.predictions_digest,
    Search.code_digest,
    Checkpoint.digest,
    DatasetVersion.digest,
    Round.inputs_digest,
    Round.ids_digest,
    Round.labels_digest,
    Round.scorer_digest,
    Submission.predictions_digest,
    Reproduction.checkpoint_digest,
    Reproduction.predictions_digest,
)

# How long an upload may take to be named by a committed row.
GRACE = timedelta(minutes=15)

# Digests per query: one IN list per column keeps it under SQLite's 999 parameters.
BATCH = 100


def referenced(digests: Iterable[str]) -> set[str]:
    """Those of `digests` that some row still names: one query per BATCH digests."""
    named: set[str] = set()
    for batch in _batches(sorted(set(digests))):
        query = union(
            *(select(column.label("digest")).where(column.in_(batch)) for column in REFERENCES)
        )
        named.update(db.session.scalars(query))
    return named


def release(store: ArtifactStore, digests: Iterable[str], *, grace: timedelta = GRACE) -> set[str]:
    """Delete the blobs of `digests` that nothing names and that were not uploaded
    within `grace`; return the digests this call deleted. Call it after committing the
    removal of the rows that named them."""
    wanted = {d for d in digests if DIGEST_PATTERN.match(d)}
    written_before = time.time() - grace.total_seconds()
    return _discard(store, wanted - referenced(wanted), written_before)


def sweep(store: ArtifactStore, grace: timedelta = GRACE) -> set[str]:
    """Delete every blob nothing names that was uploaded before `grace` ago, in one
    walk of the store; return their digests."""
    written_before = time.time() - grace.total_seconds()
    old = (digest for digest, mtime in store.stored() if mtime < written_before)
    deleted: set[str] = set()
    for batch in _batches(old):
        deleted |= _discard(store, set(batch) - referenced(batch), written_before)
    store.clear_abandoned(claimed_before=written_before)
    return deleted


def _discard(store: ArtifactStore, unused: set[str], written_before: float) -> set[str]:
    deleted = {d for d in sorted(unused) if store.discard(d, written_before=written_before)}
    for digest in sorted(deleted):
        log.info("deleted blob %s: nothing names it", digest)
    return deleted


def _batches(digests: Iterable[str]) -> Iterator[list[str]]:
    iterator = iter(digests)
    while batch := list(islice(iterator, BATCH)):
        yield batch
