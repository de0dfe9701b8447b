"""Sessions' TensorBoard event files, read by the agent as they grow, and only those."""

import os
from pathlib import Path

import pytest

from nodes.tensorboard import TensorBoardTail, open_inside

torch_tensorboard = pytest.importorskip("torch.utils.tensorboard")


def test_a_summary_writers_scalars_are_read_as_they_grow(tmp_path):
    sent: list[dict] = []
    tail = TensorBoardTail([tmp_path], sent.append)
    writer = torch_tensorboard.SummaryWriter(str(tmp_path / "runs" / "a"))
    for step in range(3):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
        writer.add_scalars("pair", {"x": step, "y": 2 * step}, step)
    writer.flush()
    assert tail.poll() == 9
    columns = {tag: c for body in sent for tag, c in body["scalars"].items()}
    assert columns["train/loss"]["step"] == [0, 1, 2]
    assert columns["train/loss"]["value"] == pytest.approx([1.0, 0.5, 1 / 3])
    assert columns["pair_x/pair"]["value"] == [0.0, 1.0, 2.0]
    assert columns["pair_y/pair"]["value"] == [0.0, 2.0, 4.0]
    sent.clear()
    writer.add_scalar("train/loss", 0.1, 3)
    writer.flush()
    assert tail.poll() == 1  # only what is new
    assert sent == [
        {
            "scalars": {
                "train/loss": {
                    "step": [3],
                    "value": [pytest.approx(0.1)],
                    "wall_time": sent[0]["scalars"]["train/loss"]["wall_time"],
                }
            }
        }
    ]
    writer.close()
    tail.close()


def test_links_and_odd_files_are_never_followed(tmp_path):
    root = tmp_path / "session"
    (root / "logs").mkdir(parents=True)
    secret = tmp_path / "node.token"
    secret.write_text("pdm_node_secret")
    (root / "logs" / "events.out.tfevents.1.link").symlink_to(secret)
    (root / "escape").symlink_to(tmp_path)
    os.mkfifo(root / "logs" / "events.out.tfevents.2.fifo")
    assert open_inside(root, Path("logs/events.out.tfevents.1.link")) is None
    assert open_inside(root, Path("escape/node.token")) is None
    assert open_inside(root, Path("logs/events.out.tfevents.2.fifo")) is None  # never blocks
    sent: list[dict] = []
    tail = TensorBoardTail([root], sent.append)
    assert tail.poll() == 0 and sent == []
    tail.close()
