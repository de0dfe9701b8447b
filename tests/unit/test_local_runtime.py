import os
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from nodes.agent import Agent
from nodes.runtime import RunSpec, get_runtime


def spec(tmp_path: Path, script: str, *, memory_mb: int = 512, gpus=()) -> RunSpec:
    code, output = tmp_path / "session" / "code", tmp_path / "session" / "output"
    code.mkdir(parents=True, exist_ok=True)
    output.mkdir(exist_ok=True)
    (code / "main.py").write_text(script)
    return RunSpec(
        session_id=1,
        ident="ada/1",
        entry="main.py",
        args=["--flag", "a b"],
        code_dir=code,
        output_dir=output,
        gpu_indices=list(gpus),
        cpus=1,
        memory_mb=memory_mb,
        env={"PATH": os.environ["PATH"], "PODIUM_SESSION": "ada/1"},
    )


def test_a_process_gets_its_gpus_arguments_and_environment(tmp_path):
    runtime = get_runtime("local")
    run = runtime.start(
        spec(
            tmp_path,
            "import os, sys\n"
            "print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['PODIUM_SESSION'])\n"
            "print(sys.argv[1:])\nprint(os.getpgid(0) == os.getpid())\n",
            gpus=[2, 5],
        )
    )
    assert list(run.output()) == ["2,5 ada/1", "['--flag', 'a b']", "True"]
    assert run.wait().exit_code == 0


def test_a_share_of_a_gpu_is_told_the_part_of_its_memory_it_may_use(tmp_path):
    from dataclasses import replace

    script = (
        "import os\n"
        "print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ.get('PODIUM_GPU_MEMORY_FRACTION'),"
        " os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION'))\n"
    )
    runtime = get_runtime("local")
    shared = runtime.start(replace(spec(tmp_path, script, gpus=[3]), gpu_share=0.25))
    assert list(shared.output()) == ["3 0.25 0.25"]
    whole = runtime.start(spec(tmp_path, script, gpus=[3]))
    assert list(whole.output()) == ["3 None None"]


def test_going_over_the_memory_limit_kills_the_whole_group(tmp_path):
    runtime = get_runtime("local")
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "hog = []\n"
        "while True:\n"
        "    hog.append(bytearray(16 * 2**20))\n"
        "    time.sleep(0.01)\n"
    )
    run = runtime.start(spec(tmp_path, script, memory_mb=200))
    output = run.output()
    child_pid = int(next(output))
    deadline = time.monotonic() + 30
    while not runtime.check_memory(run):
        assert time.monotonic() < deadline, "the memory hog was never caught"
        time.sleep(0.05)
    list(output)
    info = run.wait()
    assert info.out_of_memory and info.exit_code == -9
    time.sleep(0.2)
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == "zombie"


def test_stop_ends_a_process_that_ignores_sigterm(tmp_path):
    runtime = get_runtime("local")
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    run = runtime.start(spec(tmp_path, script))
    assert next(run.output()) == "ready"
    started = time.monotonic()
    run.stop(grace_seconds=0.5)
    assert run.wait().exit_code == -9
    assert time.monotonic() - started < 10


def test_unknown_runtime_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown runtime 'podman'"):
        get_runtime("podman")


def test_the_session_runs_under_the_agents_interpreter(tmp_path):
    run = get_runtime("local").start(spec(tmp_path, "import sys; print(sys.executable)"))
    assert list(run.output()) == [sys.executable]
    run.wait()


def test_a_session_ends_with_its_main_process_even_if_a_child_lingers(tmp_path):
    """The agent kills what a finished session left behind; its output then closes."""
    script = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print('main done', flush=True)\n"
    )
    run = get_runtime("local").start(spec(tmp_path, script))
    started = time.monotonic()
    threading.Thread(target=Agent._reap_stragglers, args=(run,), daemon=True).start()
    assert list(run.output()) == ["main done"]
    assert time.monotonic() - started < 10


def test_a_run_over_its_time_limit_is_killed(tmp_path):
    from dataclasses import replace

    run = get_runtime("local").start(
        replace(spec(tmp_path, "import time\ntime.sleep(60)\n"), time_limit_s=1.0)
    )
    started = time.monotonic()
    info = run.wait()
    assert info.timed_out and info.exit_code == -9
    assert time.monotonic() - started < 10


@pytest.mark.skipif(os.geteuid() != 0, reason="sessions change users only under a root agent")
def test_a_session_runs_as_its_own_user_and_leaves_nothing_running_after_it(tmp_path):
    runtime = get_runtime("local")
    script = (
        "import os, subprocess, sys\n"
        "print(os.getuid(), os.getgroups(), flush=True)\n"
        # A process that leaves the session's group and would wait for the next session
        # given the same uid.
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],\n"
        "                 start_new_session=True)\n"
    )
    run = runtime.start(spec(tmp_path, script))
    uid_text, groups = next(run.output()).split(" ", 1)
    uid = int(uid_text)
    assert uid in range(62000, 63000) and groups == "[]"
    assert run.wait().exit_code == 0

    def alive_as(uid: int) -> bool:
        return any(
            p.info["uids"].real == uid and p.info["status"] != psutil.STATUS_ZOMBIE
            for p in psutil.process_iter(["uids", "status"])
        )

    assert alive_as(uid)
    runtime.finished(run)
    assert not alive_as(uid)
    assert (tmp_path / "session" / "code").stat().st_uid == os.geteuid()
