import io
import tarfile

import pytest

from cli.client import CliError
from cli.pack import iter_files, pack


def names(root):
    return sorted(p.as_posix() for p in iter_files(root))


def test_gitignore_and_podiumignore_are_honoured_also_when_nested(tmp_path):
    (tmp_path / ".gitignore").write_text("*.log\nbuild/\n")
    (tmp_path / ".podiumignore").write_text("data/\n!keep.log\n")
    for path in [
        "train.py",
        "run.log",
        "keep.log",
        "build/x.o",
        "data/big.bin",
        "pkg/model.py",
        "pkg/.gitignore",
        "pkg/cache.tmp",
        ".git/HEAD",
        "__pycache__/x.pyc",
        ".podium/checkpoints/1/model.pkl",
    ]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    (tmp_path / "pkg" / ".gitignore").write_text("*.tmp\n")
    assert names(tmp_path) == [
        ".gitignore",
        ".podiumignore",
        "keep.log",
        "pkg/.gitignore",
        "pkg/model.py",
        "train.py",
    ]


def test_the_same_folder_packs_to_the_same_bytes(tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    first, second = io.BytesIO(), io.BytesIO()
    pack(tmp_path, first, max_bytes=10**6)
    pack(tmp_path, second, max_bytes=10**6)
    assert first.getvalue() == second.getvalue()
    with tarfile.open(fileobj=io.BytesIO(first.getvalue())) as tar:
        assert tar.getnames() == ["train.py"]


def test_a_folder_over_the_limit_is_refused_before_packing(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 2048)
    out = io.BytesIO()
    with pytest.raises(CliError, match="over the 0 MiB limit"):
        pack(tmp_path, out, max_bytes=1024)
    assert out.getvalue() == b""


def test_symlinked_folders_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("x")
    (code / "link").symlink_to(outside)
    assert names(code) == ["train.py"]


def test_an_entry_point_the_ignore_files_leave_out_is_named(tmp_path):
    (tmp_path / ".gitignore").write_text("*.py\n")
    (tmp_path / "train.py").write_text("x")
    with pytest.raises(CliError, match=r"train\.py would not be uploaded"):
        pack(tmp_path, io.BytesIO(), max_bytes=10**6, required="train.py")
