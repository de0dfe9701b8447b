"""Checkpoints a session saves through the SDK, stored in the artifact store."""

from __future__ import annotations

import re
from typing import IO, Any

from sqlalchemy import select

from cli.archive import SESSION_ARCHIVE_BYTES, SESSION_ARCHIVE_FILES
from portal.errors import ApiError, NotFound
from portal.extensions import db
from portal.models import Checkpoint, Session, SessionKind, User
from portal.services import archives, metrics
from portal.services.artifacts import ArtifactStore
from portal.timeutil import isoformat

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def save_checkpoint(
    session: Session, name: str, stream: IO[bytes], store: ArtifactStore, *, max_bytes: int
) -> Checkpoint:
    """Store a checkpoint: a gzipped tar of the folder `save` wrote, inspected like code
    (a grading node unpacks it). A refused archive is not deleted here: its bytes may be
    another upload's; `blobs.sweep` collects them once nothing names them."""
    if not NAME_PATTERN.match(name):
        raise ApiError(
            "a checkpoint name is letters, digits, '.', '-' and '_'", code="invalid_input"
        )
    digest, size = store.put(stream, max_bytes=max_bytes)
    archives.inspect(
        store.path(digest),
        max_unpacked_bytes=SESSION_ARCHIVE_BYTES,
        max_files=SESSION_ARCHIVE_FILES,
    )
    checkpoint = db.session.scalar(
        select(Checkpoint).where(Checkpoint.session_id == session.id, Checkpoint.name == name)
    )
    if checkpoint is None:
        checkpoint = Checkpoint(session_id=session.id, name=name, digest=digest, size=size)
        db.session.add(checkpoint)
    else:
        checkpoint.digest, checkpoint.size = digest, size
    db.session.commit()
    return checkpoint


def list_checkpoints(session: Session) -> list[Checkpoint]:
    return list(
        db.session.scalars(
            select(Checkpoint).where(Checkpoint.session_id == session.id).order_by(Checkpoint.id)
        )
    )


def find_checkpoint(session: Session, name: str) -> Checkpoint:
    found = db.session.scalar(
        select(Checkpoint).where(Checkpoint.session_id == session.id, Checkpoint.name == name)
    )
    if found is None:
        raise NotFound(f"session {session.ident} has no checkpoint {name!r}")
    return found


def for_download(viewer: User, session: Session, name: str) -> Checkpoint:
    """A checkpoint someone downloads out of the platform: not one of a session that
    mounts a sessions-only dataset they do not own (it could carry the data)."""
    from portal.services.sessions import check_data_stays  # sessions imports this module

    check_data_stays(viewer, session, "downloading its checkpoints")
    return find_checkpoint(session, name)


def checkpoint_dict(checkpoint: Checkpoint, scalars: bool = False) -> dict[str, Any]:
    """With `scalars`: the step a checkpoint named by a number was saved at (`sdk.save(
    epoch)`), and what the session reported at that step."""
    body: dict[str, Any] = {
        "name": checkpoint.name,
        "size": checkpoint.size,
        "digest": checkpoint.digest,
        "created_at": isoformat(checkpoint.created_at),
    }
    if scalars:
        step = int(checkpoint.name) if checkpoint.name.lstrip("-").isdigit() else None
        body["step"] = step
        body["scalars"] = metrics.values_at(checkpoint.session_id, step) if step is not None else {}
    return body


def submittable(user: User, limit: int = 50) -> list[tuple[Session, Checkpoint]]:
    """The user's own checkpoints a competition could grade, newest first: those of
    their training sessions (a grading session's copy is never submitted again)."""
    return [
        (session, checkpoint)
        for checkpoint, session in db.session.execute(
            select(Checkpoint, Session)
            .join(Session, Checkpoint.session_id == Session.id)
            .where(Session.user_id == user.id, Session.kind == SessionKind.TRAINING.value)
            .order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
            .limit(limit)
        )
    ]
