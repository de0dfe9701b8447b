"""A content-addressed file store on local disk: code archives and checkpoints.

Blobs are named by their SHA-256, written to a temporary file first and renamed into
place, so a reader never sees half a file and an interrupted upload leaves nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
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
