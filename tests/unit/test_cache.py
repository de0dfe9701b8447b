import hashlib
import io
import tarfile

import pytest

from nodes.cache import CacheError, DatasetCache


def archive_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Store:
    """Stands in for the portal's internal API: counts what the cache fetches."""

    def __init__(self):
        self.blobs: dict[str, bytes] = {}
        self.fetched: list[str] = []

    def add(self, files):
        blob = archive_of(files)
        digest = hashlib.sha256(blob).hexdigest()
        self.blobs[digest] = blob
        return digest

    def fetch(self, digest, destination):
        self.fetched.append(digest)
        destination.write_bytes(self.blobs[digest])


def test_a_second_use_copies_nothing_and_the_least_recently_used_go_first(tmp_path):
    store = Store()
    cache = DatasetCache(tmp_path / "cache", max_bytes=10, fetch=store.fetch)
    one, two, three = (store.add({f"{n}.csv": b"12345"}) for n in ("one", "two", "three"))

    def ensure(digest, ref):
        return cache.ensure(digest=digest, content_digest=f"c-{ref}", ref=ref, size_bytes=5)

    path = ensure(one, "d:1")
    assert (path / "one.csv").read_bytes() == b"12345"
    fetched = cache.stats["bytes_fetched"]
    assert ensure(one, "d:1") == path
    assert cache.stats["bytes_fetched"] == fetched and store.fetched == [one]
    ensure(two, "d:2")
    ensure(one, "d:1")  # d:1 is now the more recently used
    ensure(three, "d:3")  # room for two: d:2 goes
    assert cache.held() == ["d:1", "d:3"] and cache.stats["evictions"] == 1
    reopened = DatasetCache(tmp_path / "cache", max_bytes=10, fetch=store.fetch)
    assert reopened.held() == ["d:1", "d:3"]


def test_a_copy_that_does_not_match_its_digest_leaves_nothing(tmp_path):
    store = Store()
    digest = store.add({"a": b"x"})
    store.blobs[digest] = archive_of({"a": b"tampered"})
    cache = DatasetCache(tmp_path / "cache", max_bytes=100, fetch=store.fetch)
    with pytest.raises(CacheError, match="does not match its digest"):
        cache.ensure(digest=digest, content_digest="c", ref="d:1", size_bytes=1)
    assert cache.held() == [] and not (tmp_path / "cache" / "c").exists()
