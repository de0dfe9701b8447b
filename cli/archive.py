"""Tar archives read within limits: by the portal when it inspects an upload, by node
agents when they unpack code, checkpoints and datasets, and by `podium` and the SDK when
they unpack what they download.

Python's tarfile reads a long-name or extended (PAX) header whole into memory, however
large it says it is: a 1 MB archive can claim a 1 GiB name. `BoundedTarInfo` refuses
such a header before reading it. `unpack` counts every member and byte before writing
it, so that what a node writes is bounded by the limits, not by the archive's size.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

# A path, a link target or the extended attributes of one member: beyond any real name
# (4,096 bytes on Linux), far below what would hurt.
MAX_HEADER_BYTES = 8 * 1024
_LONG_HEADERS = frozenset(
    {
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.SOLARIS_XHDTYPE,
    }
)

# What a session's code or a checkpoint may unpack to: the portal checks it at upload,
# and whoever unpacks one again (a node, `podium model pull`, the SDK's `load`) stops
# there too.
SESSION_ARCHIVE_BYTES = 8 * 2**30
SESSION_ARCHIVE_FILES = 200_000
# Files, folders and links of one dataset version (the portal takes a million files).
DATASET_MEMBERS = 2_000_000


class ArchiveRefused(tarfile.TarError):
    """An archive beyond the limits; the message says which."""


class BoundedTarInfo(tarfile.TarInfo):
    """tarfile's member, refusing what tarfile would hold in memory without bound: a long
    header bigger than MAX_HEADER_BYTES, a global extended header (copied into every
    member after it), sparse files (their maps are read whole, whatever they claim) and
    hard links (unpacking one needs every member before it kept)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        # tarfile's hook for each header block, before a long header's body is read.
        if self.type in _LONG_HEADERS and self.size > MAX_HEADER_BYTES:
            raise ArchiveRefused(
                f"a header of {self.size} bytes (names and extended headers are limited "
                f"to {MAX_HEADER_BYTES // 1024} KiB)"
            )
        if self.type == tarfile.XGLTYPE:
            raise ArchiveRefused("global extended headers are refused")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise ArchiveRefused(f"{self.name}: sparse files are refused")
        if self.type == tarfile.LNKTYPE:
            raise ArchiveRefused(f"{self.name}: hard links are refused (pack the file itself)")
        return super()._proc_member(tarfile_)  # type: ignore[misc]

    def _proc_gnusparse_10(self, next, pax_headers, tarfile_):
        raise ArchiveRefused("sparse files are refused")


def open_stream(source: Path | IO[bytes], compression: str = "*") -> tarfile.TarFile:
    """The archive at a path or in a file, read once from start to end (`compression`:
    tarfile's, `*` for any)."""
    mode = f"r|{compression}"
    if isinstance(source, Path):
        return tarfile.open(source, mode, tarinfo=BoundedTarInfo)  # type: ignore[call-overload]
    return tarfile.open(fileobj=source, mode=mode, tarinfo=BoundedTarInfo)  # type: ignore[call-overload]


def members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Each member in turn, none kept after its turn (tarfile would keep them all)."""
    for member in tar:
        tar.members = []  # type: ignore[attr-defined]
        yield member


def unpack(
    archive: Path | IO[bytes], destination: Path, *, max_bytes: int, max_members: int
) -> int:
    """Unpack `archive` into `destination` with tarfile's `data` filter (no links out,
    no absolute paths, no device files), refusing it at the first member past
    `max_members` members or `max_bytes` bytes. Returns the bytes written."""
    written = count = 0
    with open_stream(archive) as tar:
        for member in members(tar):
            count += 1
            written += member.size if member.isfile() else 0
            if count > max_members:
                raise ArchiveRefused(f"more than {max_members} members")
            if written > max_bytes:
                raise ArchiveRefused(f"it unpacks to more than {max_bytes // 2**20} MiB")
            tar.extract(member, destination, filter="data")
    return written


def unpack_fresh(
    archive: Path | IO[bytes], destination: Path, *, max_bytes: int, max_members: int
) -> int:
    """`unpack` into `destination` (absent or empty) whole or not at all: into a folder
    beside it first, renamed into place once every member is in, so that a refused
    archive leaves nothing behind."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        written = unpack(archive, staging, max_bytes=max_bytes, max_members=max_members)
        staging.chmod(0o755)
        if destination.exists():
            destination.rmdir()
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def spool(chunks: Iterable[bytes], file: IO[bytes]) -> IO[bytes]:
    """A download written to `file` as it comes (never held whole), rewound to read."""
    for chunk in chunks:
        file.write(chunk)
    file.seek(0)
    return file
