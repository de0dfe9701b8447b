"""A session reports a million points as fast as Python can: every one is stored, and
reads back through the API."""

import time

from tests.integration.stack import User
from tests.integration.test_sessions import script

STEPS, TAGS = 100_000, 10


def test_a_million_points_reported_at_full_speed_all_read_back(demo: User, tmp_path):
    entry = script(
        tmp_path / "code",
        f"""
        import time
        from cli import sdk
        tags = [f"tag{{i}}" for i in range({TAGS})]
        started = time.perf_counter()
        for step in range({STEPS}):
            sdk.report(step, **{{tag: step * 0.5 + i for i, tag in enumerate(tags)}})
        print(f"reported in {{time.perf_counter() - started:.2f}} s", flush=True)
        """,
    )
    started = time.monotonic()
    done = demo("run", str(entry), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    ident = done.stdout.splitlines()[0]
    series = {s["tag"]: s for s in demo.api("GET", f"/sessions/{ident}/series").json()}
    assert sorted(series) == [f"tag{i}" for i in range(TAGS)]
    assert all(s["count"] == STEPS and s["last_step"] == STEPS - 1 for s in series.values())
    for i in range(TAGS):
        body = demo.api("GET", f"/sessions/{ident}/scalars", params={"tag": f"tag{i}"}).json()
        assert body["step"] == list(range(STEPS))
        assert body["value"] == [step * 0.5 + i for step in range(STEPS)]
    line = demo.api(
        "GET", f"/sessions/{ident}/scalars", params={"tag": "tag3", "points": 500}
    ).json()
    assert len(line["step"]) <= 1001 and line["step"][-1] == STEPS - 1
    print(f"a million points: run to read back {time.monotonic() - started:.1f} s")


def test_bad_reads_say_what_is_wrong(demo: User, tmp_path):
    done = demo("run", str(script(tmp_path / "code", "from cli import sdk\nsdk.report(1, a=1)\n")))
    ident = done.stdout.splitlines()[0]
    missing = demo.api("GET", f"/sessions/{ident}/scalars", params={"tag": "nope"})
    assert missing.status_code == 404 and "reported no 'nope'" in missing.json()["error"]["message"]
    assert demo.api("GET", f"/sessions/{ident}/scalars").status_code == 422
    too_many = demo.api("GET", f"/sessions/{ident}/scalars", params={"tag": "a", "points": 10**6})
    assert too_many.status_code == 422


def test_heavy_reads_starve_no_node(demo: User, stack, tmp_path):
    """Users' heaviest reads keep the portal's workers busy for seconds at a time; the
    nodes' heartbeats go to a process of their own, so no session is declared lost."""
    import threading

    import requests

    heavy = script(
        tmp_path / "heavy",
        """
        from cli import sdk
        for step in range(40_000):
            sdk.report(step, **{f"t{i}": step + i for i in range(5)})
        """,
    )
    ident = demo("run", str(heavy), timeout=300).stdout.splitlines()[0]
    sleeper = script(tmp_path / "sleeper", "import time\nprint('up', flush=True)\ntime.sleep(20)\n")
    running = [demo("run", str(sleeper), "--detach").stdout.strip() for _ in range(2)]
    for session in running:
        demo.wait_for(session, {"running"})
    stop = threading.Event()
    served = []

    def read() -> None:
        headers = {"Authorization": f"Bearer {demo.token()}"}
        while not stop.is_set():
            response = requests.get(
                f"{stack.url}/api/v1/sessions/{ident}/events",
                params={"after": 0},
                headers=headers,
                timeout=120,
            )
            served.append((response.status_code, response.elapsed.total_seconds()))

    readers = [threading.Thread(target=read) for _ in range(24)]
    for reader in readers:
        reader.start()
    time.sleep(12)  # three times as long as a node may go without a heartbeat here
    stop.set()
    for reader in readers:
        reader.join(timeout=120)
    assert served and {status for status, _ in served} == {200}
    for session in running:  # not lost: they ran on, and ended as they meant to
        ended = demo.wait_for(session, {"completed", "lost", "failed"}, timeout=90)
        assert ended["status"] == "completed", ended


def test_tensorboard_scalars_arrive_with_no_code_change(demo: User, tmp_path):
    entry = script(
        tmp_path / "tb",
        """
        import time
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter("runs/exp")  # under the working folder, as usual
        for step in range(50):
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)
            if step == 25:
                writer.flush()
                time.sleep(2)  # read while it runs, too
        writer.close()
        """,
    )
    done = demo("run", str(entry), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    ident = done.stdout.splitlines()[0]
    (series,) = demo.api("GET", f"/sessions/{ident}/series").json()
    assert series["tag"] == "train/loss" and series["count"] == 50
    body = demo.api("GET", f"/sessions/{ident}/scalars", params={"tag": "train/loss"}).json()
    assert body["step"] == list(range(50))
    assert abs(body["value"][9] - 0.1) < 1e-6
