"""Uploads against a real gunicorn worker of the portal's kind (gevent): inspecting a
large archive takes seconds, and must neither stall the worker's other connections nor
get it killed by gunicorn's timeout (which would drop every connection on it and orphan
the upload)."""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from pathlib import Path

import requests

from portal.ports import free_port
from tests import factories
from tests.conftest import build_app

# gunicorn's gevent worker tells the master it is alive once a second, and the master
# kills it when it last heard more than the timeout ago: at 1 s, any lag of the worker's
# loop is a kill. At 3 s, the loop must stall for two seconds, which is what this test is
# for; inspecting the archive still takes several times as long.
WORKER_TIMEOUT_S = 3


def zeros_archive(path: Path, size: int) -> None:
    """A gzipped tar of one file of `size` zero bytes, written without compressing them
    all: after a full flush the compressor forgets what came before, so one compressed
    block of zeros can be repeated."""
    info = tarfile.TarInfo("zeros.bin")
    info.size = size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    chunk = b"\0" * 2**24
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert size % len(chunk) == 0
    crc = zlib.crc32(header)
    zeros_crc = zlib.crc32(chunk)
    with path.open("wb") as out:
        out.write(b"\x1f\x8b\x08\x00\0\0\0\0\x02\xff")
        out.write(head)
        for _ in range(size // len(chunk)):
            out.write(block)
            crc = zlib.crc32(chunk, crc) if crc else zeros_crc
        tail = b"\0" * 1024  # the end-of-archive blocks
        crc = zlib.crc32(tail, crc)
        out.write(compressor.compress(tail) + compressor.flush())
        out.write(struct.pack("<II", crc, (len(header) + size + len(tail)) & 0xFFFFFFFF))


def test_a_slow_archive_delays_only_its_own_request(tmp_path, redis_url):
    instance = tmp_path / "instance"
    database = f"sqlite:///{tmp_path / 'podium.db'}"
    app = build_app(instance, database, redis_url)
    with app.app_context():
        token = factories.token(factories.user("ada"))
    archive = tmp_path / "zeros.tar.gz"
    zeros_archive(archive, 2 * 2**30)
    assert archive.stat().st_size < 8 * 2**20
    port = free_port()
    env = {
        **os.environ,
        "PODIUM_INSTANCE": str(instance),
        "PODIUM_SECRET_KEY": "test-secret",
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        # Allowed here: it must take its time, not be refused as a bomb.
        "PODIUM_MAX_EXPANSION_RATIO": "1000000",
    }
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "1",
            # As `podium up` runs it: gevent, the app preloaded in the master.
            "--config",
            "python:portal.gunicorn_config",
            "--timeout",
            str(WORKER_TIMEOUT_S),
            "--bind",
            f"127.0.0.1:{port}",
            "portal:create_app(migrations=False)",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(url + "/api/v1/competitions", timeout=10)
                break
            except requests.RequestException:
                assert server.poll() is None and time.monotonic() < deadline, "no portal"
                time.sleep(0.1)
        waits: list[float] = []
        done = threading.Event()

        def ping() -> None:
            while not done.is_set():
                started = time.monotonic()
                with contextlib.suppress(requests.RequestException):
                    requests.get(url + "/api/v1/competitions", timeout=10)
                waits.append(time.monotonic() - started)
                time.sleep(0.1)

        pinger = threading.Thread(target=ping, daemon=True)
        pinger.start()
        started = time.monotonic()
        try:
            with archive.open("rb") as body:
                answer = requests.post(
                    url + "/api/v1/datasets/zeros/versions",
                    data=body,
                    headers={**factories.headers(token), "Content-Type": "application/gzip"},
                    timeout=60,
                )
        finally:
            took = time.monotonic() - started
            done.set()
            pinger.join()
        assert answer.status_code == 201, answer.text
        assert answer.json()["version"]["size_bytes"] == 2 * 2**30
        # It did take longer than the worker may stay silent; the others went on.
        assert took > WORKER_TIMEOUT_S, took
        assert max(waits) < 1.5, waits
        assert "WORKER TIMEOUT" not in (tmp_path / "gunicorn.log").read_text()
    finally:
        server.send_signal(signal.SIGINT)  # at once, kept-alive connections or not
        server.wait(timeout=20)
        log.close()
