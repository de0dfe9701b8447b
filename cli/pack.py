"""Pack a code folder for upload, honouring .gitignore and .podiumignore files."""

from __future__ import annotations

import gzip
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pathspec

from cli.client import CliError

IGNORE_FILES = (".gitignore", ".podiumignore")
# .podium holds what the SDK writes when a script runs outside Podium.
ALWAYS_SKIPPED = {".git", "__pycache__", ".podium"}


def _spec_for(folder: Path) -> pathspec.PathSpec | None:
    lines: list[str] = []
    for name in IGNORE_FILES:
        path = folder / name
        if path.is_file():
            lines.extend(path.read_text(errors="replace").splitlines())
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


def _ignored(specs: list[tuple[Path, pathspec.PathSpec]], path: Path, *, is_dir: bool) -> bool:
    for base, spec in specs:
        tail = path.relative_to(base).as_posix() + ("/" if is_dir else "")
        if spec.match_file(tail):
            return True
    return False


def iter_files(root: Path) -> Iterator[Path]:
    """Files to upload, relative to `root`, in a stable order. Each folder's ignore files
    apply beneath it, as git applies nested .gitignore files."""
    specs: list[tuple[Path, pathspec.PathSpec]] = []
    for folder, dirnames, filenames in os.walk(root):
        here = Path(folder)
        relative_here = here.relative_to(root)
        specs = [(base, spec) for base, spec in specs if base == here or base in here.parents]
        spec = _spec_for(here)
        if spec is not None:
            specs.append((here, spec))

        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in ALWAYS_SKIPPED
            and not (here / d).is_symlink()
            and not _ignored(specs, here / d, is_dir=True)
        )
        for name in sorted(filenames):
            relative = relative_here / name
            if not _ignored(specs, here / name, is_dir=False) and (here / name).is_file():
                yield relative


def folder_size(root: Path, files: list[Path]) -> int:
    return sum((root / f).stat().st_size for f in files)


def pack(root: Path, out: BinaryIO, *, max_bytes: int, required: str | None = None) -> int:
    """Write a gzipped tar of `root` to `out`; returns the number of files. `required`
    (the entry point) must be among them."""
    files = list(iter_files(root))
    if required is not None and Path(required) not in files:
        raise CliError(
            f"{required} would not be uploaded: .gitignore or .podiumignore in {root} leaves it out"
        )
    size = folder_size(root, files)
    if size > max_bytes:
        raise CliError(
            f"the code folder {root} holds {size / 2**20:.1f} MiB, over the "
            f"{max_bytes / 2**20:.0f} MiB limit: list what training does not need in "
            f"{root / '.podiumignore'}"
        )
    # mtime=0 in the gzip header: the same code packs to the same bytes, and the
    # portal, which stores archives by content, already has it.
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for relative in files:
            tar.inodes.clear()  # type: ignore[attr-defined]  # no hard links: refused
            info = tar.gettarinfo(root / relative, arcname=relative.as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with (root / relative).open("rb") as handle:
                tar.addfile(info, handle)
    return len(files)
