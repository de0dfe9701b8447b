"""A whole stack whose node runs sessions in Docker containers."""

import contextlib
from pathlib import Path

import pytest

from nodes.environment import Environment
from tests.conftest import require
from tests.integration.accounts import create_user
from tests.integration.stack import Stack, User
from tests.integration.test_competitions import wait_scored
from tests.integration.test_sessions import script


@pytest.fixture(scope="module")
def docker_stack(docker_client, tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("docker-stack"), PODIUM_NODE_RUNTIME="docker")
    yield running
    running.stop()


def test_a_session_in_a_container_reports_logs_and_events(docker_stack, tmp_path):
    user = User(docker_stack, tmp_path / "home")
    user.login("demo", "demo")
    entry = script(
        tmp_path / "code",
        """
        import os, sys
        from cli import sdk
        for step in range(1, 4):
            sdk.report(step=step, loss=1 / step)
        print("in", os.getcwd(), "with", sys.version.split()[0], flush=True)
    """,
    )
    result = user("run", str(entry))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "in /podium/code with 3." in result.stdout
    ident = result.stdout.splitlines()[0]
    assert [e["step"] for e in user.json("events", ident)] == [1, 2, 3]
    admin = User(docker_stack, tmp_path / "admin")
    admin.login("admin", "admin")
    node = admin.json("node", "ls")[0]
    assert node["runtime"] == "docker"
    assert "podium/base:latest" in node["images"]  # reported, for the scheduler


def test_a_missing_image_fails_the_session_in_plain_words(docker_stack, tmp_path):
    user = User(docker_stack, tmp_path / "home")
    user.login("demo", "demo")
    result = user("run", str(script(tmp_path / "code", "print(1)")), "--image", "podium/none:0")
    assert result.returncode == 1
    assert "image podium/none:0 is not on node" in result.stderr


def test_exec_and_sh_run_inside_the_sessions_container(docker_stack, tmp_path):
    user = User(docker_stack, tmp_path / "home")
    user.login("demo", "demo")
    entry = script(
        tmp_path / "code",
        """
        import time
        open("/podium/output/marker", "w").write("inside")
        print("ready", flush=True)
        time.sleep(60)
    """,
    )
    ident = user("run", str(entry), "--detach").stdout.strip()
    user.wait_for(ident, {"running"})
    result = user("exec", ident, "--", "cat", "/podium/output/marker")
    assert result.returncode == 0 and result.stdout == "inside"
    failed = user("exec", ident, "--", "sh", "-c", "echo oops >&2; exit 3")
    assert failed.returncode == 3 and failed.stdout == "oops\n"
    shell = user("sh", ident, input="pwd\nls /podium\nexit\n")
    assert "/podium/code" in shell.stdout and "output" in shell.stdout
    other = User(docker_stack, tmp_path / "admin-not")
    create_user(docker_stack, "mallory", "mallory-pw")
    other.login("mallory", "mallory-pw")
    refused = other("exec", ident, "--", "id")
    assert refused.returncode == 1 and f"no session {ident}" in refused.stderr
    user("stop", ident)
    ended = user.wait_for(ident, {"stopped"})
    refused = user("exec", ident, "--", "id")
    assert "it must be running" in refused.stderr and ended


def test_datasets_are_mounted_read_only_in_the_container(docker_stack, tmp_path):
    user = User(docker_stack, tmp_path / "home")
    user.login("demo", "demo")
    folder = tmp_path / "rows"
    folder.mkdir()
    (folder / "train.csv").write_text("5,6\n")
    assert user("dataset", "push", "rows", str(folder)).returncode == 0
    entry = script(
        tmp_path / "code",
        """
        import os
        from cli import sdk
        path = os.path.join(sdk.DATASET_PATH, "rows", "train.csv")
        print(sdk.DATASET_PATH, open(path).read().strip(), flush=True)
        try:
            open(path, "w").write("changed")
        except OSError:
            print("read-only", flush=True)
    """,
    )
    result = user("run", str(entry), "-d", "rows")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/podium/datasets 5,6" in result.stdout and "read-only" in result.stdout


def test_a_stranger_runs_code_only_inside_a_container(docker_stack, tmp_path):
    import requests

    signed_up = requests.post(
        docker_stack.url + "/api/v1/auth/users",
        json={"username": "stranger", "password": "correct horse"},
        timeout=10,
    )
    assert signed_up.status_code == 201 and signed_up.json()["level"] == "user"
    mallory = User(docker_stack, tmp_path / "home")
    mallory.login("stranger", "correct horse")
    entry = script(
        tmp_path / "code",
        f"""
        import os
        print("uid", os.getuid(), flush=True)
        # The processes it can see: its own container's only, never the node agent.
        for pid in sorted(p for p in os.listdir("/proc") if p.isdigit()):
            try:
                print("process", open(f"/proc/{{pid}}/cmdline", "rb").read(), flush=True)
            except OSError:
                pass
        try:
            open({str(docker_stack.instance / "config.py")!r}, "rb").read()
            print("GOT the instance's config", flush=True)
        except OSError as exc:
            print("no config:", type(exc).__name__, flush=True)
    """,
    )
    result = mallory("run", str(entry))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "uid 0" not in result.stdout and "GOT" not in result.stdout
    assert "no config: FileNotFoundError" in result.stdout
    processes = [line for line in result.stdout.splitlines() if line.startswith("process")]
    assert processes and not any(b in line for line in processes for b in ("nodes", "gunicorn"))


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_pytorch_example_trains_in_its_environment_and_is_graded_in_a_container(
    docker_stack, docker_client, tmp_path
):
    """examples/mnist_cnn names torch in requirements.txt: the node builds that
    environment, trains in it, and grades the checkpoint in it (no network, read-only
    root, the round's limits)."""
    example = EXAMPLES / "mnist_cnn" / "train.py"
    requirements = (example.parent / "requirements.txt").read_text()
    with contextlib.suppress(Exception):  # built by an earlier run: build it again
        docker_client.images.remove(Environment(requirements=requirements).tag, force=True)
    demo = User(docker_stack, tmp_path / "demo", cwd=tmp_path)
    demo.login("demo", "demo")
    trained = demo("run", str(example), "-d", "digits-train", "-a", "--epochs 8", timeout=900)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    lines = trained.stdout.splitlines()
    ident = lines[0]
    assert any(line.startswith("podium: building environment podium/env:") for line in lines)
    assert "torch 2." in trained.stdout and "epoch 8:" in trained.stdout
    session = demo.session(ident)
    assert session["environment"].startswith("podium/env:")
    last = next(line for line in lines if line.startswith("epoch 8:"))
    accuracy = float(last.rsplit("=", 1)[1])
    assert accuracy > 0.9

    submitted = demo.json("submit", f"{ident}:8", "-C", "digits")
    entry = wait_scored(demo, "digits", submitted["id"], timeout=300)
    assert entry["status"] == "scored", entry
    assert entry["public_score"] > 0.9  # the CNN, scored on hidden labels

    # The node reports the environment it holds; the owner sees it, a stranger does not.
    listed = demo.json("env", "ls")
    assert [row["tag"] for row in listed] == [session["environment"]]
    create_user(docker_stack, "eve", "eve-password")
    eve = User(docker_stack, tmp_path / "eve")
    eve.login("eve", "eve-password")
    assert eve.json("env", "ls") == []

    # Run again: the environment is there, the session starts at once.
    again = demo("run", str(example), "-a", "--epochs 1", timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"podium: environment {session['environment']} is on this node already" in again.stdout


def test_a_bad_environment_fails_the_session_with_the_builds_last_lines(docker_stack, tmp_path):
    demo = User(docker_stack, tmp_path / "demo")
    demo.login("demo", "demo")
    entry = script(tmp_path / "code", "print('never')")
    (entry.parent / "Dockerfile").write_text("FROM podium/base\nRUN echo about-to-fail && false\n")
    result = demo("run", str(entry))
    assert result.returncode == 1
    assert "did not build: its Dockerfile failed" in result.stderr
    assert "about-to-fail" in result.stderr  # the build's last lines are the reason
    ident = result.stdout.splitlines()[0]
    logs = demo("logs", ident).stdout
    assert "Step 1/" in logs and "about-to-fail" in logs  # the whole build, in its log
    (entry.parent / "Dockerfile").write_text("FROM debian:bookworm\n")
    refused = demo("run", str(entry))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "FROM debian:bookworm: an environment builds on a Podium base image" in refused.stderr


def test_the_digits_example_runs_on_the_scientific_image(docker_stack, docker_client, tmp_path):
    """examples/digits asks for scikit-learn: on `podium/scientific` Debian's copy
    satisfies it, and its environment builds without fetching a package."""
    try:
        docker_client.images.get("podium/scientific:latest")
    except Exception:
        require(
            "PODIUM_REQUIRE_DOCKER",
            "no podium/scientific: `podium image build --variant scientific`",
        )
    # Built here, not found from an earlier run on this engine: the build is what is shown.
    for image in docker_client.images.list(name="podium/env"):
        with contextlib.suppress(Exception):
            docker_client.images.remove(image.id, force=False)
    demo = User(docker_stack, tmp_path / "demo")
    demo.login("demo", "demo")
    example = EXAMPLES / "digits" / "train.py"
    result = demo("run", str(example), "--image", "podium/scientific", "-a", "--epochs 3 --lr 0.1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Requirement already satisfied: scikit-learn" in result.stdout
    assert "epoch 3: train/loss=" in result.stdout
