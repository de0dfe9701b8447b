"""A researcher's analysis from the command line: eventlen, memo, models, diff, plot,
resume, against a real stack."""

import time

from PIL import Image

from tests.integration.stack import User
from tests.integration.test_sessions import script

TRAIN = """
    import argparse, os, time
    from cli import sdk
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--sleep", type=float, default=0)
    args = parser.parse_args()
    sdk.bind(save=lambda d: open(os.path.join(d, "w.txt"), "w").write(str(args.lr)),
             load=lambda d: print("resumed with", open(os.path.join(d, "w.txt")).read()))
    if sdk.RESUME:
        sdk.load(sdk.RESUME)
    for step in range(1, 4):
        sdk.report(step, loss=args.lr / step, acc=1 - args.lr / step)
        sdk.save(step)
    time.sleep(args.sleep)
"""


def test_a_researchers_analysis(demo: User, tmp_path):
    entry = script(tmp_path / "code", TRAIN, name="train.py")
    first = demo("run", str(entry), "-a", "--lr 0.1").stdout.splitlines()[0]
    (entry.parent / "train.py").write_text(
        entry.read_text().replace("range(1, 4):", "range(1, 4):  # three steps")
    )
    done = demo("run", str(entry), "-a", "--lr=0.5")
    assert done.returncode == 0, done.stdout + done.stderr
    second = done.stdout.splitlines()[0]

    lengths = {row["tag"]: row["count"] for row in demo.json("eventlen", first)}
    assert lengths == {"acc": 3, "loss": 3}

    assert demo("memo", first, "baseline").stdout.strip() == f"{first}: baseline"
    assert "baseline" in demo("ps").stdout

    models = demo.json("model", "ls", second)
    assert [(m["name"], m["step"]) for m in models] == [("1", 1), ("2", 2), ("3", 3)]
    assert models[1]["scalars"] == {"acc": 0.75, "loss": 0.25}
    pulled = tmp_path / "pulled"
    assert demo("model", "pull", f"{second}:2", str(pulled)).returncode == 0
    assert (pulled / "w.txt").read_text() == "0.5"

    diff = demo("diff", first, second).stdout
    assert "lr: 0.1 -> 0.5" in diff
    assert f"--- {first}/train.py" in diff and "+for step in range(1, 4):  # three steps" in diff

    png, html = tmp_path / "curves.png", tmp_path / "curves.html"
    assert demo("plot", first, second, "--tag", "loss", "-o", str(png)).returncode == 0
    with Image.open(png) as image:
        assert (
            image.size[0] == 900
            and image.getcolors(1_000_000)
            and len(image.getcolors(1_000_000)) > 2
        )
    assert demo("plot", first, second, "-o", str(html)).returncode == 0
    text = html.read_text()
    assert "Bokeh" in text and first in text and '<script src="http' not in text  # inline
    missing = demo("plot", first, "--tag", "nope")
    assert missing.returncode == 1 and missing.stderr.strip() == (
        "podium: error: none of these sessions reported nope"
    )


def test_resume_goes_on_from_the_last_checkpoint(demo: User, tmp_path):
    entry = script(tmp_path / "code", TRAIN, name="train.py")
    ident = demo("run", str(entry), "-a", "--lr 0.3 --sleep 60", "--detach").stdout.strip()
    demo.wait_for(ident, {"running"})
    for _ in range(100):
        if len(demo.json("model", "ls", ident)) == 3:
            break
        time.sleep(0.2)
    refused = demo("resume", ident)
    assert refused.returncode == 1 and "only a stopped, failed, killed or lost" in refused.stderr
    demo("stop", ident)
    demo.wait_for(ident, {"stopped"})
    resumed = demo("resume", ident, "--detach").stdout.strip()
    session = demo.session(resumed)
    assert session["forked_from"] == ident and session["resume_checkpoint"] == "3"
    assert session["memo"] == f"resumed {ident} from checkpoint 3"
    for _ in range(300):
        if "resumed with 0.3" in demo("logs", resumed).stdout:
            break
        time.sleep(0.2)
    assert "resumed with 0.3" in demo("logs", resumed).stdout
    demo("stop", resumed)
