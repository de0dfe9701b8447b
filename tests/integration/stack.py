"""A whole Podium on loopback: `python -m portal.stack` as `podium up` runs it, and the
real `podium` command driven as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from portal.ports import free_port
from tests.conftest import make_passable

PODIUM = str(Path(sys.executable).with_name("podium"))


class Stack:
    def __init__(self, root: Path, *, demo: bool = True, **environment: str):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        make_passable(root)
        self.instance = root / "instance"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(
            PODIUM_NODE_HEARTBEAT_SECONDS="0.5",
            PODIUM_NODE_LOST_AFTER_SECONDS="4",
            # Tests log in far more often than people do.
            PODIUM_AUTH_RATE_LIMIT="1000 per minute",
            PODIUM_ADDRESS_AUTH_RATE_LIMIT="1000 per minute",
            PODIUM_SIGNUP_RATE_LIMIT="1000 per minute",
            PYTHONUNBUFFERED="1",
        )
        env.update(environment)
        self.log = (root / "stack.log").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "portal.stack",
                *(["--demo"] if demo else []),
                "--port",
                str(self.port),
                "--instance",
                str(self.instance),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 90
        while "Podium is up" not in (root / "stack.log").read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the stack did not come up:\n" + self.logs())
            time.sleep(0.1)

    def logs(self) -> str:
        parts = [(self.root / "stack.log").read_text()]
        for log in sorted((self.instance / "logs").glob("*.log")):
            parts.append(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-30:]))
        return "\n".join(parts)

    def graded(self, submissions: list, timeout: float = 30) -> str:
        """The grader's log once it tells of each submission's score (the score is
        committed, and so shown, just before the grader writes the line)."""
        log = self.instance / "logs" / "grader.log"
        deadline = time.monotonic() + timeout
        while True:
            text = log.read_text()
            if all(f"submission {number}: scored" in text for number in submissions):
                return text
            assert time.monotonic() < deadline, text[-2000:]
            time.sleep(0.1)

    def join_token(self) -> str:
        namespace: dict[str, str] = {}
        exec((self.instance / "config.py").read_text(), namespace)
        return namespace["NODE_JOIN_TOKEN"]

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def child(self, fragment: str) -> psutil.Process:
        for process in self.descendants():
            if fragment in " ".join(process.cmdline()):
                return process
        raise LookupError(fragment)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


class User:
    """The `podium` command with its own $PODIUM_HOME."""

    def __init__(self, stack: Stack, home: Path, cwd: Path | None = None):
        self.stack = stack
        self.home = home
        self.cwd = cwd or home.parent
        self.cwd.mkdir(parents=True, exist_ok=True)

    def __call__(self, *args: str, input: str | None = None, timeout: float = 120):
        env = dict(os.environ, PODIUM_HOME=str(self.home))
        return subprocess.run(
            [PODIUM, *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            cwd=self.cwd,
            timeout=timeout,
        )

    def login(self, username: str, password: str) -> None:
        result = self(
            "login",
            "--url",
            self.stack.url,
            "-u",
            username,
            "--password-stdin",
            input=password + "\n",
        )
        assert result.returncode == 0, result.stderr

    def json(self, *args: str):
        result = self(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def session(self, ident: str) -> dict:
        return next(s for s in self.json("ps") if s["id"] == ident)

    def wait_for(self, ident: str, statuses: set[str], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            session = self.session(ident)
            if session["status"] in statuses:
                return session
            assert time.monotonic() < deadline, f"{ident} stayed {session['status']}"
            time.sleep(0.2)

    def token(self) -> str:
        return json.loads((self.home / "credentials.json").read_text())["token"]

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        return requests.request(
            method, self.stack.url + "/api/v1" + path, headers=headers, timeout=30, **kwargs
        )
