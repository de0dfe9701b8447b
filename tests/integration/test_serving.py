"""A trained digits model served through the real stack: `podium serve`, predictions
over HTTP with a user's token (as `curl` would send them), a crashed replica restarted,
`podium infer` on a file, and nothing left running after `podium serve stop`."""

from __future__ import annotations

import json
import subprocess
import time

import psutil
import requests
from sklearn.datasets import load_digits

from tests.integration.test_searches import DIGITS


def rows(count: int, start: int = 0) -> tuple[list[list], list[int]]:
    images, labels = load_digits(return_X_y=True)
    chosen = range(start, start + count)
    return (
        [[f"r{i}", *images[i].tolist()] for i in chosen],
        [int(labels[i]) for i in chosen],
    )


def ready(demo, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (found := demo.json("serve", "show", name))["stats"]["ready_replicas"] < 1:
        assert found["status"] == "running", found
        assert time.monotonic() < deadline, found
        time.sleep(0.5)
    return found


def test_a_digits_model_served_over_rest_and_predicted_from_a_file(demo, tmp_path):
    trained = demo("run", str(DIGITS / "train.py"), "-a", "--epochs 5 --lr 0.1")
    assert trained.returncode == 0, trained.stderr
    session = trained.stdout.splitlines()[0]
    started = demo("serve", session)
    assert started.returncode == 0, started.stderr
    name = started.stdout.strip()
    assert f"predictions at {demo.stack.url}/api/v1/serve/{name}/predict" in started.stderr
    found = ready(demo, name)
    assert found["checkpoint"] == "5" and found["source"] == session
    [replica] = found["sessions"]

    url = f"{demo.stack.url}/api/v1/serve/{name}/predict"
    headers = {"Authorization": f"Bearer {demo.token()}"}
    batch, labels = rows(40)
    answer = requests.post(url, json={"rows": batch}, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert sorted(predictions) == sorted(r[0] for r in batch)
    right = sum(predictions[f"r{i}"] == label for i, label in enumerate(labels))
    assert right >= 32, (right, predictions)
    # A request its infer cannot take: the caller is told why, and the replica goes on.
    broken = requests.post(url, json={"rows": [["x", 1, 2, 3]]}, headers=headers, timeout=60)
    assert broken.status_code == 422
    assert broken.json()["error"]["message"].startswith("the model's infer failed: ValueError")
    again = requests.post(url, json={"rows": batch[:3]}, headers=headers, timeout=60)
    assert again.status_code == 200 and len(again.json()["predictions"]) == 3
    # The same from curl, as a user of the platform would call it.
    called = subprocess.run(
        [
            "curl",
            "-sS",
            "-X",
            "POST",
            url,
            "-H",
            f"Authorization: Bearer {demo.token()}",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps({"rows": batch[:2]}),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(called.stdout) == {
        "predictions": {"r0": predictions["r0"], "r1": predictions["r1"]}
    }
    refused = requests.post(url, data=b"{", headers=headers, timeout=60)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_input"
    nobody = requests.post(url, json={"rows": batch}, timeout=60)
    assert nobody.status_code == 401

    # The replica crashes (killed from outside): the server starts another.
    killed = 0
    for process in demo.stack.descendants():
        try:
            if process.environ().get("PODIUM_SESSION") == replica["id"]:
                process.kill()
                killed += 1
        except psutil.Error:
            continue
    assert killed
    deadline = time.monotonic() + 120
    while True:
        found = demo.json("serve", "show", name)
        if found["restarts"] >= 1 and found["stats"]["ready_replicas"] >= 1:
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.5)
    assert len(found["sessions"]) == 2
    answer = requests.post(url, json={"rows": batch[:5]}, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    shown = demo("serve", "show", name).stdout
    assert "latency p50" in shown and "errors 1" in shown

    # A file predicted in a session of its own, with the same checkpoint.
    source = tmp_path / "test.csv"
    source.write_text(
        "id,"
        + ",".join(f"p{i}" for i in range(64))
        + "\n"
        + "".join(",".join(map(str, row)) + "\n" for row in batch[:10])
    )
    output = tmp_path / "predictions.csv"
    inferred = demo("infer", session, "--input", str(source), "-o", str(output), timeout=180)
    assert inferred.returncode == 0, inferred.stderr
    lines = output.read_text().splitlines()
    assert lines[0] == "id,prediction" and len(lines) == 11
    assert {line.split(",")[0]: int(line.split(",")[1]) for line in lines[1:]} == {
        f"r{i}": predictions[f"r{i}"] for i in range(10)
    }

    stopped = demo("serve", "stop", name)
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"{name} stopped"
    for replica_session in demo.json("serve", "show", name)["sessions"]:
        demo.wait_for(replica_session["id"], {"stopped", "killed", "failed", "completed"}, 60)
    after = requests.post(url, json={"rows": batch[:1]}, headers=headers, timeout=60)
    assert after.status_code == 503
    listed = demo.json("serve", "ls")
    assert [s["status"] for s in listed if s["name"] == name] == ["stopped"]
