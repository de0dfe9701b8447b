"""Hyperparameter searches through the real `podium automl` against a real stack: a
random search and a PBT run of the digits example finish within their budgets, and a
stopped search leaves nothing running."""

from __future__ import annotations

import shutil
import textwrap
import time
from pathlib import Path

from tests.integration.test_sessions import script

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"


def digits_spec(folder: Path, body: str) -> Path:
    """A spec beside a copy of the digits example."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DIGITS / "train.py", folder / "train.py")
    spec = folder / "search.yaml"
    spec.write_text(textwrap.dedent(body))
    return spec


def test_a_random_search_of_the_digits_runs_its_budget(demo, tmp_path):
    spec = digits_spec(
        tmp_path / "random",
        """
        script: train.py
        args: --epochs 3
        metric: valid/acc
        algorithm: random
        search:
          lr: {loguniform: [0.005, 0.3]}
          hidden: {int: [8, 64]}
        budget: {sessions: 3}
        parallel: 2
        seed: 1
        """,
    )
    done = demo("automl", str(spec), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    ident = done.stdout.splitlines()[0]
    assert ident.startswith("demo/search/")
    found = demo.json("automl", "show", ident)
    assert found["status"] == "done" and found["status_reason"] == "budget spent: 3 sessions"
    trials = found["trials"]
    assert [t["state"] for t in trials] == ["done"] * 3
    best = max(trials, key=lambda t: t["value"])
    assert found["best"] == {"trial": best["number"], "value": best["value"]}
    assert 0.5 < best["value"] <= 1.0
    assert done.stdout.splitlines()[-1] == (
        f"{ident} done: budget spent: 3 sessions; best: trial {best['number']}, "
        f"valid/acc {best['value']:.4g}"
    )
    # Its trials are the owner's sessions, run with the drawn arguments.
    sessions = {s["id"]: s for s in demo.json("ps", "--all")}
    for trial in trials:
        session = sessions[trial["session"]]
        assert session["status"] == "completed"
        assert session["args"] == (
            f"--epochs 3 --lr {trial['params']['lr']:.6g} --hidden {trial['params']['hidden']}"
        )
    listed = demo.json("automl", "ls")
    assert ident in [s["id"] for s in listed]


def test_pbt_on_the_digits_goes_on_from_the_better_members_checkpoints(demo, tmp_path):
    spec = digits_spec(
        tmp_path / "pbt",
        """
        script: train.py
        args: --hidden 32
        metric: valid/acc
        algorithm: pbt
        search:
          lr: {loguniform: [0.001, 0.3]}
          momentum: {uniform: [0.5, 0.95]}
        budget: {sessions: 6}
        parallel: 2
        pbt: {interval: 2, steps: 6, quantile: 0.5}
        """,
    )
    done = demo("automl", str(spec), "--detach")
    assert done.returncode == 0, done.stderr
    ident = done.stdout.strip()
    deadline = time.monotonic() + 300
    while (found := demo.json("automl", "show", ident))["status"] == "running":
        assert time.monotonic() < deadline, found
        time.sleep(1)
    assert found["status"] == "done", found
    assert found["status_reason"] == "every member reached step 6"
    trials = found["trials"]
    assert len(trials) == 6 and {t["state"] for t in trials} == {"done"}
    by_number = {t["number"]: t for t in trials}
    exploits = [
        t for t in trials if t["parent"] and by_number[t["parent"]]["member"] != t["member"]
    ]
    assert len(exploits) == 2  # one a generation: the weaker of two takes the better's
    for trial in exploits:
        parent = by_number[trial["parent"]]
        assert trial["checkpoint"] == str(parent["step"])
        logs = demo("logs", trial["session"]).stdout
        assert f"resumed from checkpoint {trial['checkpoint']}" in logs
        # It trained on from the epoch after the checkpoint's.
        assert f"epoch {int(trial['checkpoint']) + 1}:" in logs
        assert "epoch 1:" not in logs
    sessions = {s["id"]: s for s in demo.json("ps", "--all")}
    for trial in trials:
        if trial["parent"]:
            parent_session = by_number[trial["parent"]]["session"]
            assert sessions[trial["session"]]["forked_from"] == parent_session


def test_asha_on_the_digits_promotes_the_better_configurations(demo, tmp_path):
    spec = digits_spec(
        tmp_path / "asha",
        """
        script: train.py
        args: --hidden 32
        metric: valid/acc
        algorithm: asha
        search:
          lr: {loguniform: [0.001, 0.3]}
        budget: {sessions: 6}
        parallel: 2
        asha: {min_steps: 1, eta: 2, max_steps: 4}
        seed: 3
        """,
    )
    done = demo("automl", str(spec), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    found = demo.json("automl", "show", done.stdout.splitlines()[0])
    assert found["status_reason"] == "budget spent: 6 sessions"
    trials = found["trials"]
    by_number = {t["number"]: t for t in trials}
    promoted = [t for t in trials if t["parent"]]
    assert promoted, trials
    for trial in promoted:
        parent = by_number[trial["parent"]]
        assert trial["member"] == parent["member"] and trial["params"] == parent["params"]
        # Only the better half of a rung goes on.
        # Only the better half of those that had reached the rung went on.
        rivals = [
            t["value"]
            for t in trials
            if t["step"] == parent["step"]
            and t["value"] is not None
            and t["ended_at"]
            and t["ended_at"] <= trial["created_at"]
        ]
        assert parent["value"] >= sorted(rivals, reverse=True)[len(rivals) // 2 - 1]
        logs = demo("logs", trial["session"]).stdout
        assert f"resumed from checkpoint {parent['step']}" in logs
    assert any(t["state"] == "pruned" for t in trials)


def test_stopping_a_search_leaves_nothing_running(demo, tmp_path):
    entry = script(
        tmp_path / "slow",
        """
        import argparse, time
        from cli import sdk
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=float)
        args = parser.parse_args()
        for step in range(1, 1000):
            sdk.report(step, score=args.x)
            time.sleep(0.5)
        """,
        name="train.py",
    )
    spec = entry.parent / "search.yaml"
    spec.write_text(
        "script: train.py\nmetric: score\nsearch: {x: {uniform: [0, 1]}}\n"
        "budget: {sessions: 10}\nparallel: 2\n"
    )
    started = demo("automl", str(spec), "--detach")
    assert started.returncode == 0, started.stderr
    ident = started.stdout.strip()
    deadline = time.monotonic() + 60
    while len(demo.json("automl", "show", ident)["trials"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    stopped = demo("automl", "stop", ident)
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"{ident} stopped"
    found = demo.json("automl", "show", ident)
    assert found["status"] == "stopped"
    for trial in found["trials"]:
        assert trial["state"] == "stopped"
        demo.wait_for(trial["session"], {"stopped"}, timeout=60)
    again = demo("automl", "stop", ident)
    assert again.returncode == 1
    assert again.stderr.startswith(f"podium: error: search {ident} has already ended")
    # A bad spec is one line, and starts nothing.
    spec.write_text("script: train.py\nmetric: score\nsearch: {}\nbudget: {sessions: 1}\n")
    refused = demo("automl", str(spec))
    assert refused.returncode == 1
    assert refused.stderr == (
        "podium: error: search spec: the search space is empty: give at least one parameter "
        "under search\n"
    )
    assert demo.json("automl", "ls")[0]["id"] == ident
