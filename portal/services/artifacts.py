"""A content-addressed file store on local disk: code, checkpoints, datasets, round files.

Blobs are named by their SHA-256, written to a temporary file first and renamed into
place, so a reader never sees half a file and an interrupted upload leaves nothing.
Every `put` renames a freshly written file into place, even when the bytes were stored
already, so a blob's mtime is the time it was last uploaded: `portal.services.blobs`
relies on it to spare uploads whose referencing row is not committed yet. Only that
module deletes blobs, through `discard`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from portal.errors import ApiError

CHUNK = 1024 * 1024
DIGEST_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class TooLarge(ApiError):
    status = 413

    def __init__(self, limit: int):
        super().__init__(
            f"the upload is larger than the limit of {limit // (1024 * 1024)} MiB",
            code="too_large",
            details={"limit_bytes": limit},
        )


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        if not DIGEST_PATTERN.match(digest):
            raise ApiError("not a SHA-256 digest", code="invalid_input")
        return self.root / "sha256" / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, stream: IO[bytes], *, max_bytes: int) -> tuple[str, int]:
        """Store everything `stream` yields; return (digest, size)."""
        incoming = self.root / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        hasher = hashlib.sha256()
        size = 0
        fd, temp_name = tempfile.mkstemp(dir=incoming)
        try:
            with os.fdopen(fd, "wb") as temp:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(max_bytes)
                    hasher.update(chunk)
                    temp.write(chunk)
            digest = hasher.hexdigest()
            final = self.path(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp_name, final)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return digest, size

    def stored(self) -> Iterator[tuple[str, float]]:
        """Every blob as (digest, mtime), in one walk of the store."""
        for shard in _entries(self.root / "sha256"):
            for entry in _entries(Path(shard.path)):
                try:
                    if DIGEST_PATTERN.match(entry.name) and entry.is_file():
                        yield entry.name, entry.stat().st_mtime
                except FileNotFoundError:
                    continue  # discarded while we walked

    def discard(self, digest: str, *, written_before: float) -> bool:
        """Delete the blob unless it was written at or after `written_before` (a Unix
        time); True when this call deleted it.

        The file is first renamed out of place, which exactly one of several concurrent
        callers can do; its mtime is read after that rename, so an upload of the same
        bytes that landed before it is seen (and the file put back), and one that lands
        after it writes a new file that is left alone.
        """
        path = self.path(digest)
        try:
            if path.stat().st_mtime >= written_before:
                return False  # the common case of a recent upload: leave it in place
        except FileNotFoundError:
            return False
        claimed = self.root / "releasing" / f"{digest}.{uuid.uuid4().hex}"
        claimed.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            return False  # another caller took it first
        try:
            rewritten = claimed.stat().st_mtime >= written_before
        except FileNotFoundError:
            return False  # cleared by `clear_abandoned`: not ours to report
        if rewritten:
            # FileExistsError: a newer upload of the same bytes is in place already.
            with contextlib.suppress(FileExistsError):
                os.link(claimed, path)
        claimed.unlink(missing_ok=True)
        return not rewritten

    def clear_abandoned(self, claimed_before: float) -> int:
        """Delete what `discard` took out of place before `claimed_before` (a Unix time)
        and never finished with because its process died; a live call holds a file for
        microseconds. Returns how many files went."""
        cleared = 0
        for entry in _entries(self.root / "releasing"):
            try:
                if entry.stat().st_ctime < claimed_before:  # a rename sets the ctime
                    Path(entry.path).unlink()
                    cleared += 1
            except FileNotFoundError:
                continue
        return cleared


def _entries(folder: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            yield from entries
    except FileNotFoundError:
        return
