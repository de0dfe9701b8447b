"""The platform's own processes: a node agent that dies, and Ctrl-C on `podium up`."""

import os
import subprocess
import sys
import time

import psutil
import pytest
import requests

from tests.conftest import POSTGRES_URL, require, reset_postgres
from tests.integration.stack import Stack, User
from tests.integration.test_sessions import script


@pytest.fixture
def own_stack(tmp_path):
    running = Stack(tmp_path / "stack")
    yield running
    running.stop()


def alive(pid: int) -> bool:
    """A zombie is dead: it only waits for a parent to read its exit status."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_and_read_pid(user: User, entry, *args: str) -> tuple[str, int]:
    ident = user("run", str(entry), "--detach", *args).stdout.strip()
    user.wait_for(ident, {"running"})
    deadline = time.monotonic() + 10
    while not (logs := user("logs", ident).stdout.split()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return ident, int(logs[0])


SLEEPER = """
    import os, time
    print(os.getpid(), flush=True)
    time.sleep(600)
"""


def test_a_restarted_agent_settles_the_sessions_it_lost(own_stack, tmp_path):
    user = User(own_stack, tmp_path / "home")
    user.login("demo", "demo")
    ident, pid = start_and_read_pid(user, script(tmp_path / "code", SLEEPER))
    own_stack.child("-m nodes").kill()  # SIGKILL: no chance to clean up
    session = user.wait_for(ident, {"lost"}, timeout=30)
    assert "no longer runs it" in session["status_reason"]
    assert not alive(pid), "the session outlived its agent"
    assert (
        "the node exited with code -9; restarting it" in (own_stack.root / "stack.log").read_text()
    )


def test_a_session_does_not_stay_running_when_its_node_goes_silent(own_stack, tmp_path):
    """A second node, with a GPU so that the session goes there, dies for good."""
    env = dict(
        os.environ,
        PODIUM_NODE_JOIN_TOKEN=own_stack.join_token(),
        REDIS_URL="",
        PODIUM_NODE_HEARTBEAT_SECONDS="0.5",
    )
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nodes",
            "--url",
            own_stack.url,
            "--name",
            "gpu-box",
            "--gpus",
            "1:TestGPU",
            "--workdir",
            str(tmp_path / "gpu-box"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        user = User(own_stack, tmp_path / "home")
        user.login("demo", "demo")
        ident, pid = start_and_read_pid(user, script(tmp_path / "code", SLEEPER), "-g", "1")
        assert user.session(ident)["node"] == "gpu-box"
        agent.kill()
        session = user.wait_for(ident, {"lost"}, timeout=30)
        assert session["status_reason"] == ("node gpu-box stopped answering (no heartbeat for 4 s)")
        assert not alive(pid)
    finally:
        agent.kill()
        agent.wait()


def test_ctrl_c_stops_everything_and_leaves_no_process(own_stack, tmp_path):
    user = User(own_stack, tmp_path / "home")
    user.login("demo", "demo")
    entry = script(tmp_path / "code", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    ident = user("run", str(entry), "--detach").stdout.strip()
    user.wait_for(ident, {"running"})
    processes = own_stack.descendants()
    names = " ".join(" ".join(p.cmdline()) for p in processes)
    for part in ("gunicorn", "-m scheduler", "-m grader", "-m nodes", "valkey-server", "main.py"):
        assert part in names
    assert own_stack.stop() == 0
    _gone, alive = psutil.wait_procs(processes, timeout=10)
    assert alive == []
    assert "stopping Podium" in (own_stack.root / "stack.log").read_text()


def test_the_whole_stack_runs_on_postgresql(tmp_path):
    if not POSTGRES_URL:
        require("PODIUM_REQUIRE_POSTGRES", "no PostgreSQL: set PODIUM_TEST_POSTGRES_URL")
    assert POSTGRES_URL
    reset_postgres(POSTGRES_URL)
    stack = Stack(tmp_path / "stack", DATABASE_URL=POSTGRES_URL)
    try:
        health = requests.get(stack.url + "/api/v1/health", timeout=10).json()
        assert health["parts"]["database"] == {"ok": True, "dialect": "postgresql"}
        user = User(stack, tmp_path / "home")
        user.login("demo", "demo")
        entry = script(
            tmp_path / "code",
            "from cli import sdk\nsdk.report(step=1, loss=0.5)\nprint('on postgres', flush=True)\n",
        )
        result = user("run", str(entry))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "on postgres" in result.stdout
        assert [e["value"] for e in user.json("events", result.stdout.split()[0])] == [0.5]
    finally:
        stack.stop()


def _listening(stack, fragment: str, other_than: int) -> list[int]:
    """The ports a child of the stack other than `other_than` listens on, or none yet."""
    try:
        process = stack.child(fragment)
        if process.pid == other_than:
            return []
        return [c.laddr.port for c in process.net_connections() if c.status == "LISTEN"]
    except (LookupError, psutil.Error):
        return []


def test_losing_redis_never_stops_podium(own_stack, tmp_path):
    """kill -9 of the embedded Redis: it is started again on its port, every part
    reconnects, and sessions and grading go on."""
    user = User(own_stack, tmp_path / "home")
    user.login("demo", "demo")
    redis = own_stack.child("valkey-server")
    port = next(c.laddr.port for c in redis.net_connections() if c.status == "LISTEN")
    redis.kill()
    deadline = time.monotonic() + 30
    while "the redis exited" not in (own_stack.root / "stack.log").read_text():
        assert time.monotonic() < deadline, "the embedded Redis was not restarted"
        time.sleep(0.2)
    # The exit is logged before the new server is a process, and that process exists
    # before it listens: wait for one other than the killed one to bind the port.
    while port not in _listening(own_stack, "valkey-server", other_than=redis.pid):
        assert time.monotonic() < deadline, "the restarted Redis does not listen on its port"
        time.sleep(0.2)
    # Well past the supervisor's give-up window for a crash-looping part.
    ran = user("run", str(script(tmp_path / "code", "print('after redis')")))
    assert ran.returncode == 0, ran.stderr
    ident = ran.stdout.splitlines()[0]
    assert user.wait_for(ident, {"completed"}, timeout=60)["status"] == "completed"
    assert own_stack.process.poll() is None, "Podium stopped"
    board = user("leaderboard", "digits")
    assert board.returncode == 0, board.stderr


def test_redis_restarted_empty_loses_nothing(tmp_path):
    """Redis comes back empty while a session is pending and submissions are queued:
    the scheduler places from the database, the grader's sweep queues again what waits,
    and each submission is graded exactly once."""
    stack = Stack(tmp_path / "stack", PODIUM_GRADER_SWEEP_SECONDS="2")
    try:
        demo = User(stack, tmp_path / "home", cwd=tmp_path)
        demo.login("demo", "demo")
        data = demo("competition", "data", "digits", "-o", str(tmp_path / "test.csv"))
        assert data.returncode == 0, data.stderr
        ids = [line.split(",")[0] for line in (tmp_path / "test.csv").read_text().split()[1:]]
        predictions = tmp_path / "predictions.csv"
        predictions.write_text("id,prediction\n" + "".join(f"{i},0\n" for i in ids))
        # The grader and the scheduler wait: work piles up in Redis (and the database).
        paused = [stack.child("-m grader"), stack.child("-m scheduler")]
        for process in paused:
            process.suspend()
        submitted = [
            demo.json("submit", "--file", str(predictions), "-C", "digits")["id"] for _ in range(3)
        ]
        ran = demo("run", str(script(tmp_path / "code", "print('placed after all')")), "--detach")
        ident = ran.stdout.strip()
        # Redis restarts empty: no snapshot to load, and kill -9 saves none.
        (stack.instance / "redis" / "dump.rdb").unlink(missing_ok=True)
        stack.child("valkey-server").kill()
        deadline = time.monotonic() + 30
        while "the redis exited" not in (stack.root / "stack.log").read_text():
            assert time.monotonic() < deadline, "the embedded Redis was not restarted"
            time.sleep(0.2)
        for process in paused:
            process.resume()
        assert demo.wait_for(ident, {"completed"}, timeout=90)["status"] == "completed"
        deadline = time.monotonic() + 90
        while True:
            mine = {s["id"]: s for s in demo.json("competition", "submissions", "digits")}
            if all(mine[n]["status"] == "scored" for n in submitted):
                break
            assert time.monotonic() < deadline, [mine[n]["status"] for n in submitted]
            time.sleep(0.5)
        graded = stack.graded(submitted)
        for number in submitted:
            assert graded.count(f"submission {number}: scored") == 1, number
        assert stack.process.poll() is None
    finally:
        stack.stop()


SLOW_SCORER = """\
import time

def score(labels, predictions):
    time.sleep(3)
    return sum(a == b for a, b in zip(labels, predictions)) / len(labels)
"""


def test_a_grader_killed_mid_grade_grades_once_and_charges_once(tmp_path):
    """The grader and everything under it is killed (kill -9) while it scores a
    submission: the supervisor starts it again, its sweep queues the submission again,
    and it is scored once; the team's quota counts it once."""
    from tests import factories

    # The scorer runs as a child of the grader (not in a container, as where an engine
    # answers): the test sees when it scores, and kills both.
    stack = Stack(tmp_path / "stack", PODIUM_GRADER_SWEEP_SECONDS="2", PODIUM_SCORER_SANDBOX="user")
    try:
        organiser = User(stack, tmp_path / "olga", cwd=tmp_path)
        organiser.login("admin", "admin")
        folder = tmp_path / "spec"
        folder.mkdir()
        files = factories.competition_files(rows=20)
        for name, body in files.items():
            (folder / name).write_bytes(body)
        (folder / "scorer.py").write_text(SLOW_SCORER)
        (folder / "slow.yaml").write_text(
            "slug: slow\ntitle: Slow\nrounds:\n"
            "  - {starts_at: 2020-01-01T00:00:00Z, ends_at: 2099-01-01T00:00:00Z,\n"
            "     test_inputs: test.csv, labels: labels.csv, metric: custom,\n"
            "     scorer: scorer.py, higher_is_better: true, daily_quota: 2}\n"
        )
        created = organiser("competition", "create", str(folder / "slow.yaml"))
        assert created.returncode == 0, created.stderr
        demo = User(stack, tmp_path / "demo", cwd=tmp_path)
        demo.login("demo", "demo")
        predictions = tmp_path / "predictions.csv"
        predictions.write_bytes(factories.predictions(files, 20))
        first = demo.json("submit", "--file", str(predictions), "-C", "slow")["id"]
        grader_log = stack.instance / "logs" / "grader.log"
        grader = stack.child("-m grader")
        deadline = time.monotonic() + 30
        while not (scorer := grader.children(recursive=True)):  # the scorer runs
            assert time.monotonic() < deadline, grader_log.read_text()[-2000:]
            time.sleep(0.05)
        for process in [grader, *scorer]:
            process.kill()
        assert f"submission {first}:" not in grader_log.read_text()  # killed mid-grade
        deadline = time.monotonic() + 120
        while True:
            mine = {s["id"]: s for s in demo.json("competition", "submissions", "slow")}
            if mine[first]["status"] == "scored":
                break
            assert time.monotonic() < deadline, mine[first]
            time.sleep(0.5)
        assert mine[first]["public_score"] == 1.0
        assert stack.graded([first]).count(f"submission {first}: scored") == 1
        assert stack.process.poll() is None
        # Charged once: of a daily quota of two, one is left.
        second = demo("submit", "--file", str(predictions), "-C", "slow")
        assert second.returncode == 0, second.stderr
        third = demo("submit", "--file", str(predictions), "-C", "slow")
        assert third.returncode != 0 and "used its 2 submissions" in third.stderr, third.stderr
    finally:
        stack.stop()
