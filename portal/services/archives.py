"""What an uploaded archive holds, checked before anything is unpacked from it.

A gzipped tar is read as a stream, member by member, and refused with the first
problem found: a path that is absolute or climbs out of the tree, a symbolic or hard
link that points out of it, a device file or pipe, more files or more unpacked bytes
than allowed, or bytes that expand absurdly beyond the archive's own size
(`MAX_EXPANSION_RATIO`, past 64 MiB): a decompression bomb is stopped by the bytes
actually read, whatever its headers claim. The manifest's content digest depends only
on the files' names, kinds and bytes, so the same content packed twice (other
timestamps, another compressor) has the same digest.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app, has_app_context

from cli.archive import ArchiveRefused, members, open_stream
from portal.blocking import off_the_loop
from portal.errors import ApiError

CHUNK = 1024 * 1024
RATIO_FLOOR = 64 * 2**20  # below this, any expansion is fine
DEFAULT_RATIO = 100.0
# The paths and link targets of all members together: what the manifest holds.
MAX_NAMES_BYTES = 64 * 2**20


class UnsafeArchive(ApiError):
    def __init__(self, message: str):
        super().__init__(message, code="unsafe_archive", status=422)


@dataclass(frozen=True)
class Manifest:
    files: tuple[str, ...]
    unpacked_bytes: int
    content_digest: str
    # The bytes of the top-level files asked for by name (`keep`), up to `keep_bytes`
    # and one more, so that a caller sees a file was too long.
    kept: dict[str, bytes] = field(default_factory=dict)


def _inside(name: str) -> str | None:
    """The member's normalised path inside the tree, or None if it leaves the tree."""
    if name.startswith("/") or "\\" in name:
        return None
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../"):
        return None
    return normal


def inspect(
    archive: Path,
    *,
    max_unpacked_bytes: int,
    max_files: int,
    keep: tuple[str, ...] = (),
    keep_bytes: int = 64 * 1024,
    max_ratio: float | None = None,
) -> Manifest:
    """The archive's manifest, or UnsafeArchive. Read off the event loop of a gevent
    worker (in its thread pool): a slow archive delays this request only, and the
    worker keeps answering the others and telling gunicorn it is alive."""
    if max_ratio is None:
        configured = current_app.config.get("MAX_EXPANSION_RATIO") if has_app_context() else None
        max_ratio = float(configured or DEFAULT_RATIO)
    return off_the_loop(
        _inspect, archive, max_unpacked_bytes, max_files, keep, keep_bytes, max_ratio
    )


def _inspect(
    archive: Path,
    max_unpacked_bytes: int,
    max_files: int,
    keep: tuple[str, ...],
    keep_bytes: int,
    max_ratio: float,
) -> Manifest:
    packed = max(archive.stat().st_size, 1)
    files: list[str] = []
    kept: dict[str, bytes] = {}
    entries: list[tuple[str, str, str]] = []
    unpacked = names = 0
    try:
        with open_stream(archive, "gz") as tar:
            for member in members(tar):
                if len(entries) >= max_files:  # folders and links count too
                    raise UnsafeArchive(f"more than {max_files} files")
                for text in (member.name, member.linkname):
                    try:
                        text.encode("utf-8")
                    except UnicodeEncodeError:
                        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                        raise UnsafeArchive(f"{shown}: a name that is not UTF-8") from None
                name = _inside(member.name)
                if name is None:
                    raise UnsafeArchive(f"{member.name}: a path outside the tree")
                names += len(name) + len(member.linkname)
                if names > MAX_NAMES_BYTES:
                    raise UnsafeArchive(
                        f"its names add up to more than {MAX_NAMES_BYTES // 2**20} MiB"
                    )
                if member.isdev() or member.isfifo():
                    raise UnsafeArchive(f"{member.name}: device files and pipes are refused")
                if (member.issym() or member.islnk()) and name in keep:
                    raise UnsafeArchive(f"{member.name}: this file must be a plain file")
                if member.issym() or member.islnk():
                    base = posixpath.dirname(name) if member.issym() else ""
                    target = _inside(posixpath.join(base, member.linkname))
                    if member.linkname.startswith("/") or target is None:
                        raise UnsafeArchive(
                            f"{member.name}: a link to {member.linkname}, outside the tree"
                        )
                    entries.append((name, "link", member.linkname))
                    continue
                if member.isdir():
                    entries.append((name, "dir", ""))
                    continue
                digest = hashlib.sha256()
                source = tar.extractfile(member)
                assert source is not None
                wanted = name in keep
                if wanted:  # a later member of the same name replaces it, as on unpacking
                    kept[name] = b""
                while chunk := source.read(CHUNK):
                    if wanted:
                        kept[name] = (kept.get(name, b"") + chunk)[: keep_bytes + 1]
                    unpacked += len(chunk)
                    if unpacked > max_unpacked_bytes:
                        raise UnsafeArchive(
                            f"it unpacks to more than {max_unpacked_bytes // 2**20} MiB"
                        )
                    if unpacked > RATIO_FLOOR and unpacked > packed * max_ratio:
                        raise UnsafeArchive(
                            f"it expands more than {max_ratio:g} times its size "
                            "(PODIUM_MAX_EXPANSION_RATIO): refused as a decompression bomb"
                        )
                    digest.update(chunk)
                files.append(name)
                entries.append((name, "file", digest.hexdigest()))
    except ArchiveRefused as exc:
        raise UnsafeArchive(str(exc)) from exc
    except (tarfile.TarError, EOFError, OSError, ValueError, IndexError) as exc:
        raise ApiError(
            f"the archive cannot be read as a gzipped tar: {exc}", code="invalid_input"
        ) from exc
    content = hashlib.sha256()
    for name, kind, detail in sorted(entries):
        content.update(f"{kind}\0{name}\0{detail}\n".encode())
    return Manifest(tuple(sorted(files)), unpacked, content.hexdigest(), kept)
