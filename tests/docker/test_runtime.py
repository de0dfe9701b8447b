"""The Docker runtime against a real engine and Podium's own base image."""

import contextlib
import socket
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from nodes.runtime import RunSpec, get_runtime
from nodes.runtime.docker import LABEL_NODE, DockerError


def spec(
    tmp_path: Path,
    script: str,
    *,
    session_id=1,
    memory_mb=256,
    grading=False,
    image="",
    inputs=None,
):
    code = tmp_path / f"s{session_id}" / "code"
    output = tmp_path / f"s{session_id}" / "output"
    code.mkdir(parents=True)
    output.mkdir()
    (code / "main.py").write_text(script)
    return RunSpec(
        session_id=session_id,
        ident=f"ada/{session_id}",
        entry="main.py",
        args=["--lr", "0.1"],
        code_dir=code,
        output_dir=output,
        gpu_indices=[],
        cpus=1,
        memory_mb=memory_mb,
        image=image,
        grading=grading,
        inputs=inputs,
        env={"PODIUM_SESSION": f"ada/{session_id}", "SECRET": "agent's own"},
    )


@pytest.fixture
def runtime(docker_client):
    return get_runtime("docker", client=docker_client, node="test")


def containers(client):
    return client.containers.list(all=True, filters={"label": f"{LABEL_NODE}=test"})


def test_a_session_runs_in_a_container_and_is_removed_after(runtime, docker_client, tmp_path):
    run = runtime.start(
        spec(
            tmp_path,
            """
import os, sys
from cli import sdk
print(sys.argv[1:], os.getcwd(), os.environ["PODIUM_SESSION"], flush=True)
print(os.environ.get("SECRET"), os.environ["PODIUM_OUTPUT"], sdk.SESSION, flush=True)
open(os.environ["PODIUM_OUTPUT"] + "/result.txt", "w").write("42")
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(os.getuid() != 0, status["CapEff"].strip(), status["NoNewPrivs"].strip(), flush=True)
""",
        )
    )
    assert list(run.output()) == [
        "['--lr', '0.1'] /podium/code ada/1",
        "None /podium/output ada/1",
        "True 0000000000000000 1",
    ]
    assert run.wait().exit_code == 0
    assert (run.spec.output_dir / "result.txt").read_text() == "42"
    runtime.finished(run)
    assert containers(docker_client) == []


def test_a_memory_bomb_is_out_of_memory_while_its_neighbour_runs_on(runtime, tmp_path):
    calm = runtime.start(
        spec(
            tmp_path,
            """
import time
for step in range(20):
    print(step, flush=True)
    time.sleep(0.2)
""",
            session_id=2,
        )
    )
    bomb = runtime.start(
        spec(
            tmp_path,
            """
hoard = []
while True:
    hoard.append(bytearray(32 * 2**20))
""",
            session_id=3,
            memory_mb=128,
        )
    )
    list(bomb.output())
    info = bomb.wait()
    assert info.out_of_memory
    calm.container.reload()
    assert calm.container.status == "running"
    assert list(calm.output())[-1] == "19"
    assert calm.wait().exit_code == 0
    runtime.finished(bomb)
    runtime.finished(calm)


def test_a_grading_container_has_no_network_and_writes_only_its_output(runtime, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "test.csv").write_text("id,x\n")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def accept() -> None:
        with contextlib.suppress(OSError):  # closed when the test ends: nobody came
            listener.accept()

    threading.Thread(target=accept, daemon=True).start()
    run = runtime.start(
        spec(
            tmp_path,
            f"""
import socket
import sys
from dataclasses import replace
for host in ("127.0.0.1", "1.1.1.1"):
    try:
        socket.create_connection((host, {port}), timeout=2)
        print("connected", host)
    except OSError as exc:
        print("no network", host)
print(open("/podium/inputs/test.csv").read().strip())
for path in ("/podium/code/x", "/etc/x", "/podium/inputs/x", "/podium/output/predictions.csv"):
    try:
        open(path, "w").write("x")
        print("wrote", path)
    except OSError:
        print("refused", path)
""",
            session_id=4,
            grading=True,
            inputs=inputs,
        )
    )
    assert list(run.output()) == [
        "no network 127.0.0.1",
        "no network 1.1.1.1",
        "id,x",
        "refused /podium/code/x",
        "refused /etc/x",
        "refused /podium/inputs/x",
        "wrote /podium/output/predictions.csv",
    ]
    assert run.wait().exit_code == 0
    runtime.finished(run)
    listener.close()


def test_a_missing_image_fails_in_plain_words_and_leaves_no_container(
    runtime, docker_client, tmp_path
):
    with pytest.raises(DockerError, match="image podium/nothing:1 is not on node test"):
        runtime.start(spec(tmp_path, "print(1)", session_id=5, image="podium/nothing:1"))
    assert containers(docker_client) == []


def test_a_restarted_agent_adopts_running_and_ended_containers(docker_client, tmp_path):
    first = get_runtime("docker", client=docker_client, node="test")
    data = tmp_path / "cache" / "abc"
    data.mkdir(parents=True)
    running_spec = spec(
        tmp_path, "import time\nprint('up', flush=True)\ntime.sleep(30)\n", session_id=6
    )
    running = first.start(replace(running_spec, datasets={"mnist": data}, time_limit_s=60))
    ended = first.start(spec(tmp_path, "print('bye')\nraise SystemExit(3)\n", session_id=7))
    assert ended.container.wait()["StatusCode"] == 3  # it ends while no agent watches
    again = get_runtime("docker", client=docker_client, node="test")  # the agent restarted
    adopted = again.adopt()
    assert sorted(adopted) == [6, 7]
    assert adopted[6].spec.datasets == {"mnist": data}  # the cache keeps what it mounts
    assert adopted[6].spec.time_limit_s == 60
    # Its resource samples go on counting from when it started, not from the adoption.
    assert abs(adopted[6].started_at - running.started_at) < 2
    assert next(adopted[6].output()) == "up"
    assert list(adopted[7].output()) == ["bye"]
    assert adopted[7].wait().exit_code == 3  # its outcome is still reported
    again.finished(adopted[7])
    adopted[6].kill()
    adopted[6].wait()
    again.finished(adopted[6])
    assert containers(docker_client) == []
    assert running.container.id == adopted[6].container.id  # type: ignore[attr-defined]


def test_a_run_over_its_time_limit_is_killed(runtime, tmp_path):

    slow = replace(
        spec(tmp_path, "import time\ntime.sleep(60)\n", session_id=8, grading=True),
        time_limit_s=1.5,
    )
    run = runtime.start(slow)
    info = run.wait()
    assert info.timed_out and info.exit_code != 0
    assert run.wait().timed_out  # a second waiter (the agent has two) hears the same
    runtime.finished(run)


def test_gpus_without_nvidias_toolkit_fail_in_plain_words(runtime, docker_client, tmp_path):
    if runtime.gpu_refusal() is None:
        pytest.skip("this engine has NVIDIA's container toolkit")
    with pytest.raises(DockerError, match="install NVIDIA Container Toolkit"):
        runtime.start(replace(spec(tmp_path, "print(1)"), gpu_indices=[0]))
    assert containers(docker_client) == []


def test_podium_up_builds_the_base_image_only_when_the_engine_lacks_it(docker_client, capsys):
    from portal.stack import ensure_base_image

    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    # Present: nothing is built (the failing build would say so).
    assert ensure_base_image("podium/base:latest", failing, client=docker_client) is False
    with pytest.raises(SystemExit, match="needs podium/none-such:0, and building it failed"):
        ensure_base_image("podium/none-such:0", failing, client=docker_client)
    assert "building podium/none-such:0 for the Docker runtime" in capsys.readouterr().out
    built = [sys.executable, "-c", "print('built')"]
    assert ensure_base_image("podium/none-such:0", built, client=docker_client) is True


BUSY_UNTIL_SIGNALLED = """
import signal, sys, time
def checkpoint(signum, frame):
    print("checkpoint asked", flush=True)
    sys.exit(0)
signal.signal(signal.SIGUSR1, checkpoint)
print("ready", flush=True)
x = [0] * 5_000_000  # about 40 MiB held
while True:
    sum(range(10_000))
"""


def test_a_containers_use_is_read_and_it_is_asked_to_checkpoint(runtime, tmp_path):
    """What the node's monitor samples under Docker (the engine's statistics of the
    container's cgroup), and SIGUSR1 reaching the session's Python, the container's
    first process."""
    import time

    run = runtime.start(spec(tmp_path, BUSY_UNTIL_SIGNALLED))
    lines = run.output()
    assert next(lines) == "ready"
    time.sleep(1.5)
    first = run.usage()
    time.sleep(1.0)
    second = run.usage()
    assert first is not None and second is not None
    assert second[0] - first[0] > 0.5  # CPU seconds: it is busy
    assert second[1] > 30  # MiB held
    run.request_checkpoint()
    assert next(lines) == "checkpoint asked"
    assert run.wait().exit_code == 0
    assert run.usage() is None  # gone: no statistics
    runtime.finished(run)
