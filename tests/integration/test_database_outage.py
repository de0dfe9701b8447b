"""PostgreSQL restarted under load: the whole stack on a PostgreSQL server of the test's
own, requests from several clients at once, and the server stopped and started again.
Requests fail clearly for the outage (503, the API's envelope) and succeed after it;
every part of the platform stays up, and what was accepted is graded exactly once."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from portal.ports import free_port
from tests import factories
from tests.conftest import require
from tests.integration.stack import Stack, User
from tests.integration.test_sessions import script


class Server:
    """A throwaway PostgreSQL cluster run as the postgres user, which the test may stop."""

    def __init__(self, root: Path):
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if os.geteuid() != 0 or not binaries or shutil.which("runuser") is None:
            require("PODIUM_REQUIRE_POSTGRES", "no PostgreSQL server to restart (needs root)")
        self.bin = Path(binaries[-1])
        self.data = root / "pgdata"
        self.data.mkdir(parents=True)
        shutil.chown(self.data, "postgres", "postgres")
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()

    def _as_postgres(self, program: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / program), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"
        log = str(self.data / "server.log")
        self._as_postgres("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, "start")

    def stop(self) -> None:
        # fast: every open connection is cut, as when the server restarts for real.
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def postgres(tmp_path):
    server = Server(tmp_path / "postgres")
    yield server
    with contextlib.suppress(subprocess.CalledProcessError):  # stopped already
        server.stop()


class Load:
    """Clients asking in a loop, each answer recorded with the time it came."""

    def __init__(self, user: User, predictions: bytes):
        self.user = user
        self.predictions = predictions
        self.answers: list[tuple[float, str, int, dict | str]] = []
        self.accepted: list[int] = []
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._ask, args=(route,), daemon=True)
            for route in (
                "/sessions",
                "/competitions/outage/leaderboard",
                "/datasets",
                "/competitions/outage",
            )
        ]
        self.threads.append(threading.Thread(target=self._submit, daemon=True))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _record(self, route: str, response: requests.Response) -> None:
        try:
            body: dict | str = response.json()
        except ValueError:
            body = response.text[:200]
        self.answers.append((time.monotonic(), route, response.status_code, body))

    def _ask(self, route: str) -> None:
        while not self.stopping.is_set():
            self._record(route, self.user.api("GET", route))
            time.sleep(0.05)

    def _submit(self) -> None:
        while not self.stopping.is_set():
            response = self.user.api(
                "POST",
                "/competitions/outage/submissions",
                data=self.predictions,
                headers={"Content-Type": "text/csv"},
            )
            self._record("submit", response)
            if response.status_code == 201:
                self.accepted.append(response.json()["id"])
            time.sleep(0.3)

    def since(self, moment: float) -> list[tuple[float, str, int, dict | str]]:
        return [answer for answer in self.answers if answer[0] >= moment]


def test_postgresql_restarted_under_load(postgres, tmp_path):
    stack = Stack(tmp_path / "stack", DATABASE_URL=postgres.url, PODIUM_GRADER_SWEEP_SECONDS="2")
    try:
        admin = User(stack, tmp_path / "admin")
        admin.login("admin", "admin")
        files = factories.competition_files(rows=50)
        spec = factories.competition_spec("outage", daily_quota=10**6, total_quota=10**6)
        form = {"spec": (None, json.dumps(spec))}
        form.update({name: (name, body) for name, body in files.items()})
        assert admin.api("POST", "/competitions", files=form).status_code == 201
        demo = User(stack, tmp_path / "home", cwd=tmp_path)
        demo.login("demo", "demo")
        predictions = factories.predictions(files, 25)

        with Load(demo, predictions) as load:
            time.sleep(3)
            down = time.monotonic()
            postgres.stop()
            time.sleep(4)
            postgres.start()
            up = time.monotonic()
            time.sleep(6)

        before = [a for a in load.answers if a[0] < down]
        during = [a for a in load.answers if down <= a[0] < up]
        after = load.since(up + 3)  # a pooled connection is tried once, then replaced
        assert before and during and after
        statuses = Counter(status for _at, _route, status, _body in load.answers)
        # Clear failures for the outage, and nothing else: no 500, no dropped connection.
        unexpected = [a for a in load.answers if a[2] not in (200, 201, 503)]
        assert not unexpected, (statuses, unexpected[:3])
        refused = [a for a in load.answers if a[2] == 503]
        assert refused, "the outage was never seen"
        for _at, _route, _status, body in refused:
            assert isinstance(body, dict), body
            assert body["error"]["code"] == "unavailable", body
            assert "database" in body["error"]["message"], body
        assert all(status in (200, 201) for _at, _route, status, _body in before)
        late = [(route, status, body) for _at, route, status, body in after if status == 503]
        assert late == [], late[:3]
        assert {route for _at, route, _status, _body in after} >= {"/sessions", "submit"}
        assert len(load.accepted) >= 5

        # Every part stayed up, or came back: a session runs, and each accepted
        # submission is scored exactly once.
        assert stack.process.poll() is None, stack.logs()
        ran = demo("run", str(script(tmp_path / "code", "print('after the outage')")))
        assert ran.returncode == 0, ran.stderr + stack.logs()
        assert "after the outage" in ran.stdout
        deadline = time.monotonic() + 120
        while True:
            mine = {s["id"]: s for s in demo.json("competition", "submissions", "outage")}
            waiting = [n for n in load.accepted if mine[n]["status"] != "scored"]
            if not waiting:
                break
            assert time.monotonic() < deadline, [mine[n]["status"] for n in waiting]
            time.sleep(0.5)
        graded = stack.graded(load.accepted)
        for number in load.accepted:
            assert graded.count(f"submission {number}: scored") == 1, number
    finally:
        stack.stop()
