"""A user's whole session through the real `podium` command against a real stack."""

import os
import stat
import textwrap
from pathlib import Path

import requests

from tests.integration.stack import User

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits" / "train.py"


def script(folder: Path, body: str, name: str = "main.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def test_health_reports_every_part_up(stack):
    body = requests.get(stack.url + "/api/v1/health", timeout=10).json()
    assert body["status"] == "ok"
    assert set(body["parts"]) == {"database", "redis", "scheduler", "grader", "nodes"}


def test_the_digits_example_runs_end_to_end(demo, tmp_path):
    result = demo("run", str(DIGITS), "-a", "--epochs 3 --lr 0.1")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    ident = lines[0]
    assert ident.startswith("demo/")
    assert "epoch 3: train/loss=" in result.stdout and lines[-1] == "done"
    assert f"{ident} completed" in result.stderr

    session = demo.session(ident)
    assert session["status"] == "completed" and session["exit_code"] == 0
    assert session["node"] and session["started_at"] and session["ended_at"]
    assert demo("command", ident).stdout.strip() == "python train.py --epochs 3 --lr 0.1"
    events = demo.json("events", ident, "--tag", "valid/acc")
    assert [e["step"] for e in events] == [1, 2, 3]
    assert all(0.5 < e["value"] <= 1 for e in events)
    assert "done" in demo("logs", ident).stdout
    checkpoints = demo.api("GET", f"/sessions/{ident}/checkpoints").json()
    assert [c["name"] for c in checkpoints] == ["1", "2", "3"]
    whoami = demo("whoami")
    assert whoami.stdout.strip() == f"demo at {demo.stack.url}"


def test_credentials_are_private_and_logout_revokes_the_token(stack, tmp_path):
    user = User(stack, tmp_path / "home")
    user.login("demo", "demo")
    credentials = tmp_path / "home" / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    token = user.token()
    assert user("logout").returncode == 0
    assert not credentials.exists()
    refused = requests.get(
        stack.url + "/api/v1/auth/me", timeout=10, headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 401
    result = user("ps")
    assert result.returncode == 1
    assert result.stderr == "podium: error: not logged in: run `podium login --url URL -u USER`\n"


def test_detach_follow_stop_and_remove(demo, tmp_path):
    entry = script(
        tmp_path / "code",
        """
        import time
        print("working", flush=True)
        while True:
            time.sleep(0.1)
    """,
    )
    result = demo("run", str(entry), "--detach")
    assert result.returncode == 0, result.stderr
    ident = result.stdout.strip()
    demo.wait_for(ident, {"running"})
    refused = demo("rm", ident)
    assert refused.returncode == 1 and "stop it first" in refused.stderr
    beside = demo("exec", ident, "--", "sh", "-c", "ls; echo $PODIUM_SESSION")
    assert beside.returncode == 0 and beside.stdout == f"main.py\n{ident}\n"
    assert demo("stop", ident).returncode == 0
    session = demo.wait_for(ident, {"stopped"})
    assert session["ended_at"]
    assert "working" in demo("logs", ident).stdout
    assert demo("rm", ident).returncode == 0
    assert ident not in [s["id"] for s in demo.json("ps")]


def test_a_crash_fails_the_session_with_its_traceback(demo, tmp_path):
    entry = script(
        tmp_path / "code",
        """
        print("about to fail", flush=True)
        raise ValueError("the learning rate is negative")
    """,
    )
    result = demo("run", str(entry))
    assert result.returncode == 1
    assert "ValueError: the learning rate is negative" in result.stdout
    assert "failed: exited with code 1" in result.stderr
    ident = result.stdout.splitlines()[0]
    assert "Traceback (most recent call last)" in demo("logs", ident).stdout


def test_a_memory_hog_is_killed_and_its_neighbour_carries_on(demo, tmp_path):
    neighbour = script(
        tmp_path / "calm",
        """
        import time
        for step in range(30):
            print("step", step, flush=True)
            time.sleep(0.1)
    """,
    )
    hog = script(
        tmp_path / "hog",
        """
        import time
        hoard = []
        while True:
            hoard.append(bytearray(32 * 2**20))
            time.sleep(0.02)
    """,
    )
    calm_id = demo("run", str(neighbour), "--detach").stdout.strip()
    result = demo("run", str(hog), "-m", "256M")
    assert result.returncode == 1
    hog_id = result.stdout.splitlines()[0]
    session = demo.session(hog_id)
    assert session["status"] == "killed"
    assert "out of memory" in session["status_reason"]
    assert "256 MiB limit" in session["status_reason"]
    assert demo.wait_for(calm_id, {"completed", "failed", "killed"})["status"] == "completed"


def test_bad_input_gets_one_clear_line_and_changes_nothing(demo, stack, tmp_path):
    small = script(tmp_path / "small", "print('hi')")
    mine = demo("run", str(small)).stdout.splitlines()[0]
    before = len(demo.json("ps"))

    def refused(*args: str, message: str, user: User = demo, input: str | None = None):
        result = user(*args, input=input)
        assert result.returncode != 0, result.stdout
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert message in result.stderr, result.stderr

    refused("run", "missing.py", message="no such file: missing.py")
    big = script(tmp_path / "big", "print('hi')")
    (big.parent / "weights.bin").write_bytes(os.urandom(3 * 2**20))
    refused("run", str(big), message="over the 2 MiB limit")
    refused("run", str(small), "-g", "4", message="asks for 4 GPUs but the largest node has 0")
    refused("run", str(small), "-m", "100T", message="memory")
    refused("run", str(small), "-m", "lots", message="cannot read the memory size 'lots'")
    refused("logs", "demo/9999", message="no session demo/9999")
    refused("stop", "nobody/1", message="no session nobody/1")
    refused("events", "oops", message="a session id reads USER/N")

    other = User(stack, tmp_path / "admin-home")
    other.login("admin", "admin")
    stranger = User(stack, tmp_path / "eve-home")
    from tests.integration.accounts import create_user

    create_user(stack, "eve", "eve-password")
    stranger.login("eve", "eve-password")
    refused("logs", mine, message=f"no session {mine}", user=stranger)
    refused("rm", mine, message=f"no session {mine}", user=stranger)
    assert other("logs", mine).stdout == "hi\n"  # administrators see every session
    wrong = User(stack, tmp_path / "wrong-home")
    refused(
        "login",
        "--url",
        stack.url,
        "-u",
        "demo",
        "--password-stdin",
        input="nope\n",
        message="wrong username or password",
        user=wrong,
    )
    (tmp_path / "forged").mkdir()
    (tmp_path / "forged" / "credentials.json").write_text(
        f'{{"url": "{stack.url}", "token": "pdm_forged", "username": "demo"}}'
    )
    refused("ps", message="invalid token", user=User(stack, tmp_path / "forged"))
    dead = User(stack, tmp_path / "dead")
    (tmp_path / "dead").mkdir()
    (tmp_path / "dead" / "credentials.json").write_text(
        '{"url": "http://127.0.0.1:9", "token": "x", "username": "demo"}'
    )
    refused("ps", message="cannot reach the portal at http://127.0.0.1:9", user=dead)
    assert len(demo.json("ps")) == before


def test_a_session_started_from_any_folder_sees_its_own_code(demo, tmp_path):
    entry = script(
        tmp_path / "project" / "src",
        """
        import os, sys
        from helper import VALUE
        print(VALUE, os.environ["CUDA_VISIBLE_DEVICES"] == "", sys.argv[1:], flush=True)
    """,
        name="train.py",
    )
    (entry.parent / "helper.py").write_text("VALUE = 41 + 1\n")
    result = demo("run", str(entry), "-a", "--name 'two words'")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "42 True ['--name', 'two words']" in result.stdout
