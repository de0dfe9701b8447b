"""A competition through the real `podium` command, grader and node agent."""

import csv
import io
import textwrap
import time
from pathlib import Path

import requests

from tests import factories
from tests.integration.stack import User

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits" / "train.py"


def wait_scored(user: User, slug: str, submission: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        entry = next(
            s for s in user.json("competition", "submissions", slug) if s["id"] == submission
        )
        if entry["status"] not in ("grading", "scoring"):
            return entry
        assert time.monotonic() < deadline, f"submission {submission} stayed {entry['status']}"
        time.sleep(0.5)


def test_the_demo_competition_is_live_for_spectators(stack):
    deadline = time.monotonic() + 30
    while True:
        body = requests.get(
            stack.url + "/api/v1/competitions/digits/leaderboard", timeout=10
        ).json()
        if body["total"] == 4:
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.5)
    assert {r["team"] for r in body["rows"]} == {"owls", "larks", "herons", "finches"}
    # Which team leads depends on the round's public rows, drawn at random: the board is
    # in score order, whoever leads.
    scores = [r["score"] for r in body["rows"]]
    assert scores == sorted(scores, reverse=True)
    assert all(r["submissions"] == 4 for r in body["rows"])


def test_organise_enter_and_submit_a_file(stack, tmp_path):
    organiser = User(stack, tmp_path / "olga", cwd=tmp_path)
    organiser.login("admin", "admin")
    folder = tmp_path / "spec"
    folder.mkdir()
    files = factories.competition_files(rows=60)
    for name, body in files.items():
        (folder / name).write_bytes(body)
    (folder / "toy.yaml").write_text(
        textwrap.dedent(
            """\
            slug: toy
            title: Toy task
            description: "Guess **three** classes."
            team_size_limit: 2
            rounds:
              - name: Only round
                starts_at: 2020-01-01T00:00:00Z
                ends_at: 2099-01-01T00:00:00Z
                test_inputs: test.csv
                labels: labels.csv
                metric: macro_f1
                daily_quota: 3
            """
        )
    )
    created = organiser("competition", "create", str(folder / "toy.yaml"))
    assert created.returncode == 0, created.stderr
    assert "created toy" in created.stdout

    demo = User(stack, tmp_path / "demo", cwd=tmp_path)
    demo.login("demo", "demo")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,prediction\nr000,1\n")
    refused = demo("submit", "--file", str(bad), "-C", "toy")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == (
        "podium: error: the predictions file has 1 rows; the test set has 60"
    )
    good = tmp_path / "good.csv"
    good.write_bytes(factories.predictions(files, 60))
    submitted = demo.json("submit", "--file", str(good), "-C", "toy")
    entry = wait_scored(demo, "toy", submitted["id"])
    assert entry["status"] == "scored" and entry["public_score"] == 1.0
    board = demo.json("leaderboard", "toy")
    assert board["rows"][0]["team"] == "demo" and board["total"] == 1
    # The organiser reads the ranking; a participant may not.
    exported = organiser("competition", "export", "toy", "--round", "1")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert rows[0]["team"] == "demo" and float(rows[0]["private_score"]) == 1.0
    assert demo("competition", "export", "toy", "--round", "1").returncode != 0
    # Once a round has started, its split may not change; its quotas may; its metric
    # may, and that scores again.
    late = organiser("competition", "edit", "toy", "--round", "1", "--set", "public_fraction=0.2")
    assert late.returncode != 0
    assert (
        "only its daily_quota, ends_at, metric, tolerance, total_quota or labels can change"
        in late.stderr
    )
    quota = organiser("competition", "edit", "toy", "--round", "1", "--set", "daily_quota=9")
    assert quota.returncode == 0, quota.stderr
    changed = organiser("competition", "edit", "toy", "--round", "1", "--set", "metric=mae")
    assert changed.returncode == 0, changed.stderr
    assert "metric=mae" in changed.stdout
    entry = wait_scored(demo, "toy", submitted["id"])
    assert entry["status"] == "scored" and entry["public_score"] == 0.0  # no error at all


def test_a_checkpoint_is_graded_in_a_grading_session(stack, tmp_path):
    demo = User(stack, tmp_path / "demo", cwd=tmp_path)
    demo.login("demo", "demo")
    trained = demo("run", str(DIGITS), "-d", "digits-train", "-a", "--epochs 4 --lr 0.1")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    ident = trained.stdout.splitlines()[0]
    # What the round takes, and its published test inputs (no labels).
    data = demo("competition", "data", "digits", "-o", str(tmp_path / "test.csv"))
    assert data.returncode == 0, data.stderr
    assert "takes predictions files or models" in data.stdout
    header, *rows = (tmp_path / "test.csv").read_text().splitlines()
    assert header.startswith("id,p0") and "label" not in header and len(rows) == 500
    submitted = demo.json("submit", f"{ident}:4", "-C", "digits")
    assert submitted["status"] == "grading" and submitted["session"] == f"{ident}:4"
    entry = wait_scored(demo, "digits", submitted["id"], timeout=180)
    assert entry["status"] == "scored", entry
    assert entry["public_score"] > 0.85  # a trained network, scored on hidden labels
    board = demo.json("leaderboard", "digits", "--limit", "10")
    assert "demo" in [r["team"] for r in board["rows"]]
    # The grading session is not one of demo's training sessions: grade/ID, with its log,
    # and it cannot itself be submitted.
    grading = entry["grading_session"]
    assert grading.startswith("grade/") and grading != ident
    shown = demo.json("ps")
    kinds = {s["id"]: s["kind"] for s in shown}
    assert kinds[grading] == "grading" and kinds[ident] == "training"
    assert "wrote" in demo("logs", grading).stdout  # "podium: wrote N predictions"
    again = demo("submit", f"{grading}:4", "-C", "digits")
    assert again.returncode != 0 and "is a grading session" in again.stderr
    # The organiser runs the training again from the submission's record: the re-run is
    # demo's session reproduce/ID, graded against the same round, and a seeded training
    # reproduces its scores exactly.
    admin = User(stack, tmp_path / "admin", cwd=tmp_path)
    admin.login("admin", "admin")
    unknown = admin("competition", "reproduce", "digits", "--submission", "99999")
    assert unknown.returncode != 0 and "no submission 99999" in unknown.stderr
    assert "Traceback" not in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
    reproduced = admin.json(
        "competition", "reproduce", "digits", "--submission", str(submitted["id"]), "--wait"
    )
    assert reproduced["status"] == "scored", reproduced
    assert reproduced["training_session"].startswith("reproduce/")
    assert reproduced["original"]["public_score"] == entry["public_score"]
    assert reproduced["difference"] == {"public_score": 0.0, "private_score": 0.0}
    assert reproduced["reproduced"]["checkpoint"] == "4"
    kinds = {s["id"]: s["kind"] for s in demo.json("ps")}
    assert kinds[reproduced["training_session"]] == "reproduction"
    shown = admin("competition", "reproductions", "digits")
    assert shown.returncode == 0 and "+0.00000" in shown.stdout


def test_an_organiser_moves_in_with_a_codabench_bundle(stack, tmp_path):
    from tests.competitions.test_bundles import codabench, zipped

    admin = User(stack, tmp_path / "admin", cwd=tmp_path)
    admin.login("admin", "admin")
    bundle = tmp_path / "toy.zip"
    bundle.write_bytes(zipped({**codabench(), "../escape.txt": b"x"}))
    refused = admin("competition", "import", str(bundle))
    assert refused.returncode != 0 and "a path outside the bundle" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    bundle.write_bytes(zipped(codabench()))
    imported = admin("competition", "import", str(bundle), "--slug", "moved-in")
    assert imported.returncode == 0, imported.stderr
    lines = imported.stdout.splitlines()
    assert lines[0] == "created moved-in: Toy Classification (2 rounds)"
    assert any("image: logo.png not carried over" in line for line in lines[1:])
    shown = admin.json("competition", "show", "moved-in")
    assert [r["metric"] for r in shown["rounds"]] == ["accuracy", "accuracy"]
