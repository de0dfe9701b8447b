"""Datasets: named, versioned, immutable, and visible to the public, a team or their owner.

Pushing a name again makes a new version only when the files differ (their content
digest, not the archive's bytes, decides). An upload is inspected before it becomes a
version (see `archives`), and one that fails leaves no version behind; its bytes, which
another upload of the same content may be about to use, go at the next `blobs.sweep`.
"""

from __future__ import annotations

import re
from typing import IO, Any

from sqlalchemy import select

from portal.errors import ApiError, Conflict, Forbidden, NotFound
from portal.extensions import db
from portal.models import (
    ACTIVE_STATUSES,
    Dataset,
    DatasetVersion,
    Session,
    SessionDataset,
    Team,
    TeamMember,
    User,
    Visibility,
)
from portal.services import archives, blobs
from portal.services.artifacts import ArtifactStore
from portal.timeutil import isoformat, utcnow

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def team_ids(user: User | None) -> set[int]:
    if user is None:
        return set()
    return set(db.session.scalars(select(TeamMember.team_id).where(TeamMember.user_id == user.id)))


def can_read(viewer: User | None, dataset: Dataset) -> bool:
    if dataset.visibility == Visibility.PUBLIC.value:
        return True
    if viewer is None:
        return False
    if viewer.is_admin or viewer.id == dataset.owner_id:
        return True
    return dataset.visibility == Visibility.TEAM.value and dataset.team_id in team_ids(viewer)


def find(viewer: User | None, name: str) -> Dataset:
    """The dataset, if `viewer` may read it; 404 otherwise, so names do not leak."""
    dataset = db.session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None or not can_read(viewer, dataset):
        raise NotFound(f"no dataset {name!r}")
    return dataset


def find_version(viewer: User | None, ref: str) -> DatasetVersion:
    """`NAME` (its latest version) or `NAME:VERSION`."""
    name, _, number = ref.partition(":")
    dataset = find(viewer, name)
    if not dataset.versions:
        raise NotFound(f"dataset {name} has no version")
    if not number:
        return dataset.versions[-1]
    for version in dataset.versions:
        if str(version.number) == number:
            return version
    raise NotFound(f"dataset {name} has no version {number!r}")


def check_leaves(viewer: User | None, datasets: list[Dataset], what: str) -> None:
    """Refuse `what` (a download, an exec, a checkpoint) that would hand a sessions-only
    dataset's bytes to anyone but its owner or an administrator."""
    for dataset in datasets:
        if dataset.sessions_only and not (
            viewer is not None and (viewer.is_admin or viewer.id == dataset.owner_id)
        ):
            raise Forbidden(
                f"dataset {dataset.name} is for sessions only: sessions mount it, but it "
                f"never leaves the platform, so {what} is refused",
                code="sessions_only",
            )


def mark_sessions_only(viewer: User, dataset: Dataset) -> Dataset:
    """Its owner makes a dataset sessions-only (for good: what was downloaded before
    cannot be called back, so it is never undone)."""
    _owned(viewer, dataset)
    dataset.sessions_only = True
    return dataset


def visible(viewer: User | None) -> list[Dataset]:
    return [
        d for d in db.session.scalars(select(Dataset).order_by(Dataset.name)) if can_read(viewer, d)
    ]


def _owned(viewer: User, dataset: Dataset) -> None:
    if not (viewer.is_admin or viewer.id == dataset.owner_id):
        raise Forbidden(f"only the owner of {dataset.name} or an administrator may change it")


def _team(viewer: User, name: str) -> Team:
    team = db.session.scalar(select(Team).where(Team.name == name))
    if team is None or (team.id not in team_ids(viewer) and not viewer.is_admin):
        raise NotFound(f"no team {name!r} of yours")
    return team


def push(
    owner: User,
    name: str,
    stream: IO[bytes],
    store: ArtifactStore,
    *,
    visibility: str | None,
    team: str | None,
    description: str | None,
    max_bytes: int,
    max_unpacked_bytes: int,
    max_files: int,
) -> tuple[DatasetVersion, bool]:
    """Store an archive as the next version of `name`; (version, whether it is new)."""
    if not NAME_PATTERN.match(name):
        raise ApiError(
            "a dataset name is 1-64 lower-case letters, digits, '.', '-', '_'", code="invalid_input"
        )
    dataset = db.session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is not None:
        if not can_read(owner, dataset):
            raise Conflict(f"the name {name!r} is taken")
        _owned(owner, dataset)
    chosen_team = _team(owner, team) if team else None
    if chosen_team is not None:
        visibility = Visibility.TEAM.value
    if visibility == Visibility.TEAM.value and chosen_team is None:
        raise ApiError("name the team that may read it", code="invalid_input")
    digest, _ = store.put(stream, max_bytes=max_bytes)
    # A refused archive is not deleted here: its bytes may be another upload's, not
    # named by its row yet. `blobs.sweep` collects them once the grace has passed.
    manifest = archives.inspect(
        store.path(digest), max_unpacked_bytes=max_unpacked_bytes, max_files=max_files
    )
    if dataset is None:
        dataset = Dataset(
            name=name, owner_id=owner.id, visibility=visibility or Visibility.PRIVATE.value
        )
        db.session.add(dataset)
    elif visibility:
        dataset.visibility = visibility
    if chosen_team is not None or visibility in (Visibility.PUBLIC.value, Visibility.PRIVATE.value):
        dataset.team_id = chosen_team.id if chosen_team else None
    if description is not None:
        dataset.description = description
    same = next((v for v in dataset.versions if v.content_digest == manifest.content_digest), None)
    if same is not None:
        db.session.commit()
        return same, False
    version = DatasetVersion(
        number=max((v.number for v in dataset.versions), default=0) + 1,
        digest=digest,
        content_digest=manifest.content_digest,
        size_bytes=manifest.unpacked_bytes,
        file_count=len(manifest.files),
    )
    dataset.versions.append(version)
    db.session.commit()
    return version, True


def touch(dataset: Dataset) -> None:
    dataset.last_accessed_at = utcnow()
    db.session.commit()


def in_use(version: DatasetVersion) -> list[str]:
    """The active sessions that mount this version."""
    return [
        s.ident
        for s in db.session.scalars(
            select(Session)
            .join(SessionDataset, SessionDataset.session_id == Session.id)
            .where(
                SessionDataset.version_id == version.id,
                Session.status.in_([s.value for s in ACTIVE_STATUSES]),
            )
        )
    ]


def remove(viewer: User, dataset: Dataset, store: ArtifactStore, number: int | None = None) -> None:
    _owned(viewer, dataset)
    doomed = [v for v in dataset.versions if number is None or v.number == number]
    if number is not None and not doomed:
        raise NotFound(f"dataset {dataset.name} has no version {number}")
    for version in doomed:
        users = in_use(version)
        if users:
            raise Conflict(f"{version.ident} is used by {', '.join(users)}: stop them first")
    digests = [v.digest for v in doomed]
    if number is None:
        db.session.delete(dataset)
    else:
        for version in doomed:
            db.session.delete(version)
    db.session.commit()
    blobs.release(store, digests)


def dataset_dict(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "owner": dataset.owner.username,
        "visibility": dataset.visibility,
        "team": dataset.team.name if dataset.team else None,
        "description": dataset.description,
        "versions": [version_dict(v) for v in dataset.versions],
        "size_bytes": dataset.versions[-1].size_bytes if dataset.versions else 0,
        "sessions_only": dataset.sessions_only,
        "created_at": isoformat(dataset.created_at),
        "last_accessed_at": isoformat(dataset.last_accessed_at),
    }


def version_dict(version: DatasetVersion) -> dict[str, Any]:
    return {
        "number": version.number,
        "ref": version.ident,
        "size_bytes": version.size_bytes,
        "file_count": version.file_count,
        "content_digest": version.content_digest,
        "created_at": isoformat(version.created_at),
    }
