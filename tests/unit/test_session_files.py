"""What the agent (root, maybe) reads of a session's own folder: plain files only."""

import os

from nodes.agent import read_session_file


def test_a_plain_file_is_read(tmp_path):
    (tmp_path / "predictions.csv").write_text("id,prediction\n1,2\n")
    assert read_session_file(tmp_path / "predictions.csv") == b"id,prediction\n1,2\n"


def test_a_link_to_the_agents_secrets_is_not_followed(tmp_path):
    secret = tmp_path / "node.token"
    secret.write_text("pdm_the-node-token")
    output = tmp_path / "output"
    output.mkdir()
    # What a grading session can do in its own output folder.
    (output / "predictions.csv").symlink_to(secret)
    assert read_session_file(output / "predictions.csv") is None
    os.link(secret, output / "hard.csv")
    assert read_session_file(output / "hard.csv") is None
    os.mkfifo(output / "pipe.csv")
    assert read_session_file(output / "pipe.csv") is None
    assert read_session_file(output / "missing.csv") is None


def test_a_file_over_the_limit_is_not_read(tmp_path):
    (tmp_path / "big.csv").write_bytes(b"x" * 100)
    assert read_session_file(tmp_path / "big.csv", limit=10) is None
