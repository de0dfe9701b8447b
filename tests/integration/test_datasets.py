"""Datasets through the real command: push, versions, mounting, the node's cache."""

import time

from tests.integration.stack import User
from tests.integration.test_sessions import script

READER = """
    import os
    from cli import sdk
    root = sdk.DATASET_PATH
    for name in sorted(os.listdir(root)):
        print(name, open(os.path.join(root, name, "train.csv")).read().strip(), flush=True)
"""


def cache_stats(admin: User) -> dict:
    return admin.json("node", "ls")[0]["sample"].get("dataset_cache", {})


def test_datasets_are_versioned_mounted_and_cached(demo, stack, tmp_path):
    data = tmp_path / "digits-data"
    data.mkdir()
    (data / "train.csv").write_text("1,2\n")
    pushed = demo("dataset", "push", "digits", str(data), "--description", "tiny")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith("digits:1 (new version, 1 files")
    assert "unchanged: no new version" in demo("dataset", "push", "digits", str(data)).stdout
    (data / "train.csv").write_text("3,4\n")
    assert demo("dataset", "push", "digits", str(data)).stdout.startswith("digits:2 (new")
    other = tmp_path / "labels"
    other.mkdir()
    (other / "train.csv").write_text("cat\n")
    demo("dataset", "push", "labels", str(other))
    listed = demo.json("dataset", "ls")
    # With the demo competition's public training set.
    assert [(d["name"], len(d["versions"])) for d in listed] == [
        ("digits", 2),
        ("digits-train", 1),
        ("labels", 1),
    ]

    admin = User(stack, tmp_path / "admin")
    admin.login("admin", "admin")
    before = cache_stats(admin).get("bytes_fetched", 0)
    entry = script(tmp_path / "code", READER)
    first = demo("run", str(entry), "-d", "digits:1", "-d", "labels")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "digits 1,2\nlabels cat" in first.stdout
    session = demo.session(first.stdout.splitlines()[0])
    assert session["datasets"] == ["digits:1", "labels:1"]

    time.sleep(1.5)  # a heartbeat carries the cache's counters
    copied = cache_stats(admin)["bytes_fetched"] - before
    assert copied > 0
    second = demo("run", str(entry), "-d", "digits:1", "-d", "labels:1")
    assert second.returncode == 0 and "digits 1,2" in second.stdout
    time.sleep(1.5)
    assert cache_stats(admin)["bytes_fetched"] - before == copied  # a hit copies nothing
    assert {"digits:1", "labels:1"} <= set(admin.json("node", "ls")[0]["datasets"])

    refused = demo("run", str(entry), "-d", "nothing")
    assert refused.returncode == 1 and "no dataset 'nothing'" in refused.stderr
    pulled = demo("dataset", "pull", "digits:1", str(tmp_path / "pulled"))
    assert pulled.returncode == 0
    assert (tmp_path / "pulled" / "train.csv").read_text() == "1,2\n"
    assert demo("dataset", "rm", "digits:2").returncode == 0
    assert demo("dataset", "rm", "digits").returncode == 0
    # The sessions still say which version they used.
    assert demo.session(first.stdout.splitlines()[0])["datasets"] == ["digits:1", "labels:1"]
