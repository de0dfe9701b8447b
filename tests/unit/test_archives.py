"""Hostile archives are refused, each with its first problem named."""

import gzip
import io
import re
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from portal.errors import ApiError
from portal.services.archives import UnsafeArchive, inspect

LIMITS = {"max_unpacked_bytes": 2**20, "max_files": 100}


def archive(tmp_path, members, name="a.tar.gz", mtime=0):
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        for member_name, kind, payload in members:
            info = tarfile.TarInfo(member_name)
            info.mtime = mtime
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {
                "sym": tarfile.SYMTYPE,
                "hard": tarfile.LNKTYPE,
                "dev": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
                "dir": tarfile.DIRTYPE,
            }[kind]
            info.linkname = payload.decode()
            tar.addfile(info)
    return path


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("../escape.txt", "file", b"x")], "../escape.txt: a path outside the tree"),
        ([("a/../../escape.txt", "file", b"x")], "a path outside the tree"),
        ([("/etc/passwd", "file", b"x")], "/etc/passwd: a path outside the tree"),
        ([("data/link", "sym", b"../../etc/passwd")], "data/link: a link to ../../etc/passwd"),
        ([("link", "sym", b"/etc/passwd")], "a link to /etc/passwd, outside the tree"),
        ([("hard", "hard", b"../outside")], "hard: hard links are refused"),
        ([("hard", "hard", b"inside")], "hard: hard links are refused"),
        ([("tty", "dev", b"")], "tty: device files and pipes are refused"),
        ([("pipe", "fifo", b"")], "pipe: device files and pipes are refused"),
        ([(f"f{i}", "file", b"x") for i in range(101)], "more than 100 files"),
        # Folders and links count: 200,000 of them are as many inodes as files.
        ([(f"d{i}", "dir", b"") for i in range(101)], "more than 100 files"),
        ([(f"l{i}", "sym", b"d0") for i in range(101)], "more than 100 files"),
    ],
)
def test_hostile_archives_are_refused(tmp_path, members, message):
    with pytest.raises(UnsafeArchive, match=re.escape(message)):
        inspect(archive(tmp_path, members), **LIMITS)


def test_a_decompression_bomb_is_stopped_by_what_it_unpacks_to(tmp_path):
    bomb = archive(tmp_path, [("zeros.bin", "file", b"\0" * (8 * 2**20))])
    assert bomb.stat().st_size < 64 * 1024  # small on the wire
    with pytest.raises(UnsafeArchive, match="unpacks to more than 1 MiB"):
        inspect(bomb, **LIMITS)


def test_not_an_archive_is_a_clear_error(tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ApiError, match="cannot be read as a gzipped tar"):
        inspect(path, **LIMITS)


def test_links_inside_the_tree_are_fine_and_the_digest_follows_content_only(tmp_path):
    members = [
        ("data", "dir", b""),
        ("data/a.csv", "file", b"1,2\n"),
        ("data/latest.csv", "sym", b"a.csv"),
    ]
    first = inspect(archive(tmp_path, members, "one.tar.gz", mtime=0), **LIMITS)
    second = inspect(archive(tmp_path, members[::-1], "two.tar.gz", mtime=10**9), **LIMITS)
    assert first.files == ("data/a.csv",) and first.unpacked_bytes == 4
    assert first.content_digest == second.content_digest
    changed = inspect(
        archive(tmp_path, [("data/a.csv", "file", b"1,3\n")], "three.tar.gz"), **LIMITS
    )
    assert changed.content_digest != first.content_digest


def long_name_bomb(tmp_path, claimed: int = 2**30, sent: int = 2**20) -> Path:
    """A gzipped tar whose first header announces a GNU long name of `claimed` bytes,
    followed by only `sent` bytes of it: tarfile would read the whole name into memory."""
    header = tarfile.TarInfo("././@LongLink")
    header.type = tarfile.GNUTYPE_LONGNAME
    header.size = claimed
    block = header.tobuf(format=tarfile.GNU_FORMAT)[:512]
    path = tmp_path / "longname.tar.gz"
    with gzip.open(path, "wb") as out:
        out.write(block)
        out.write(b"a" * sent)
    return path


def test_a_header_that_claims_a_gigabyte_name_is_refused_unread(tmp_path):
    bomb = long_name_bomb(tmp_path)
    assert bomb.stat().st_size < 64 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeArchive, match="a header of 1073741824 bytes"):
            inspect(bomb, **LIMITS)
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20
    finally:
        tracemalloc.stop()


def test_a_node_unpacks_within_its_limits_and_refuses_long_headers(tmp_path):
    from cli.archive import ArchiveRefused, unpack

    fine = archive(tmp_path, [("a/x.txt", "file", b"x" * 10), ("a/y.txt", "file", b"y")])
    assert unpack(fine, tmp_path / "out", max_bytes=11, max_members=2) == 11
    assert (tmp_path / "out" / "a" / "x.txt").read_bytes() == b"x" * 10
    with pytest.raises(ArchiveRefused, match="unpacks to more than"):
        unpack(fine, tmp_path / "big", max_bytes=10, max_members=10)
    with pytest.raises(ArchiveRefused, match="more than 1 members"):
        unpack(fine, tmp_path / "many", max_bytes=100, max_members=1)
    # Refused before the member past the limit is written.
    assert not (tmp_path / "big" / "a" / "y.txt").exists()
    with pytest.raises(ArchiveRefused, match="a header of"):
        unpack(long_name_bomb(tmp_path), tmp_path / "long", max_bytes=2**30, max_members=10)


def test_headers_that_tarfile_would_hold_without_bound_are_refused(tmp_path):
    """A global extended header is copied into every member after it (6,000 keys and
    2,000 empty files took 400 MiB), and a sparse file's map is read whole."""
    path = tmp_path / "global.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a")
        info.type = tarfile.XGLTYPE
        info.pax_headers = {f"k{n}": "v" for n in range(100)}
        tar.addfile(info)
        tar.addfile(tarfile.TarInfo("b"))
    with pytest.raises(UnsafeArchive, match="global extended headers are refused"):
        inspect(path, **LIMITS)
    sparse = tmp_path / "sparse.tar.gz"
    with tarfile.open(sparse, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("holes")
        info.type = tarfile.GNUTYPE_SPARSE
        tar.addfile(info)
    with pytest.raises(UnsafeArchive, match="sparse files are refused"):
        inspect(sparse, **LIMITS)
