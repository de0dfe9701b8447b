"""The node's dataset cache: each dataset version is copied once, verified, unpacked,
and kept while space allows; the least recently used go first.

Versions are keyed by their content digest. The copy is checked against the archive's
SHA-256 before it is unpacked (with tarfile's `data` filter), and a version becomes
visible only once fully unpacked (renamed into place), so a failed copy leaves nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.archive import DATASET_MEMBERS, unpack

log = logging.getLogger(__name__)


class CacheError(RuntimeError):
    pass


class DatasetCache:
    def __init__(self, root: Path, max_bytes: int, fetch: Callable[[str, Path], None]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.fetch = fetch  # fetch(archive digest, destination file)
        self.stats = {"hits": 0, "misses": 0, "bytes_fetched": 0, "evictions": 0}
        self._lock = threading.Lock()
        self._index_path = self.root / "index.json"
        self._index: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            index = json.loads(self._index_path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in index.items() if (self.root / k / ".complete").exists()}

    def _save(self) -> None:
        temp = self._index_path.with_suffix(".tmp")
        temp.write_text(json.dumps(self._index))
        os.replace(temp, self._index_path)

    def held(self) -> list[str]:
        """The dataset versions held, as NAME:VERSION, for the scheduler's locality."""
        with self._lock:
            return sorted({entry["ref"] for entry in self._index.values()})

    def ensure(
        self,
        *,
        digest: str,
        content_digest: str,
        ref: str,
        size_bytes: int,
        in_use: frozenset[str] | set[str] = frozenset(),
    ) -> Path:
        """The unpacked version, copied here first if it is not."""
        with self._lock:
            target = self.root / content_digest
            if content_digest in self._index and (target / ".complete").exists():
                self._index[content_digest]["last_used"] = time.time()
                self.stats["hits"] += 1
                self._save()
                return target
            self.stats["misses"] += 1
            self._make_room(size_bytes, keep=set(in_use) | {content_digest})
            with tempfile.TemporaryDirectory(dir=self.root, prefix=".incoming-") as folder:
                archive = Path(folder) / "archive.tar.gz"
                self.fetch(digest, archive)
                self.stats["bytes_fetched"] += archive.stat().st_size
                if _sha256(archive) != digest:
                    raise CacheError(f"{ref}: the copy does not match its digest")
                unpacked = Path(folder) / "data"
                unpacked.mkdir()
                # Checked by the portal at upload; bounded here all the same.
                unpack(
                    archive,
                    unpacked,
                    max_bytes=size_bytes + 2**20,
                    max_members=DATASET_MEMBERS,
                )
                _readable_by_sessions(unpacked)
                (unpacked / ".complete").touch()
                shutil.rmtree(target, ignore_errors=True)
                os.replace(unpacked, target)
            self._index[content_digest] = {"ref": ref, "size": size_bytes, "last_used": time.time()}
            self._save()
            return target

    def _make_room(self, incoming: int, keep: set[str]) -> None:
        used = sum(entry["size"] for entry in self._index.values())
        for key, _entry in sorted(self._index.items(), key=lambda kv: kv[1]["last_used"]):
            if used + incoming <= self.max_bytes:
                break
            if key in keep:
                continue
            shutil.rmtree(self.root / key, ignore_errors=True)
            used -= self._index.pop(key)["size"]
            self.stats["evictions"] += 1
            log.info("dataset cache: evicted %s", key)


def _readable_by_sessions(folder: Path) -> None:
    """Sessions may run as users other than the agent's: they read a dataset copy (never
    write it), whatever modes its archive carried."""
    for root, _dirs, files in os.walk(folder):
        os.chmod(root, 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, (os.stat(path).st_mode & 0o777 | 0o444) & ~0o222)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
