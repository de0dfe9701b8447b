"""Parts of the platform away: Redis stopped, the artifact store's disk full. Requests
fail clearly for the outage (503, 507) with nothing half-kept, and succeed after it."""

from __future__ import annotations

import os
import subprocess

import pytest
from redis import Redis

from portal.ports import free_port
from portal.redis_server import EmbeddedRedis
from tests import factories
from tests.competitions.test_competitions_api import setup  # noqa: F401
from tests.conftest import require


@pytest.fixture
def own_redis(app, tmp_path):
    """The app on a Redis of its own, which the test stops and starts again."""
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    saved = app.extensions["redis"]
    app.extensions["redis"] = Redis.from_url(server.url)
    yield server
    server.stop()
    app.extensions["redis"] = saved


def test_requests_that_need_redis_answer_503_while_it_is_away(setup, client, own_redis):  # noqa: F811
    board = "/api/v1/competitions/toy/leaderboard"
    assert client.get(board).status_code == 200
    own_redis.stop()
    away = client.get(board)
    assert away.status_code == 503, away.get_data(as_text=True)[:300]
    assert away.get_json()["error"]["code"] == "unavailable"
    assert "Redis" in away.get_json()["error"]["message"]
    page = client.get("/competitions/toy/rounds/1/leaderboard", headers={"Accept": "text/html"})
    assert page.status_code == 503 and "try again shortly" in page.get_data(as_text=True)
    own_redis.start()  # the same port: the same clients reconnect
    assert client.get(board).status_code == 200


@pytest.fixture
def small_disk(app):
    """The artifact store on a 1 MiB file system of its own."""
    root = app.config["ARTIFACT_ROOT"]
    os.makedirs(root, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", root], capture_output=True
    )
    if mounted.returncode != 0:
        require("PODIUM_REQUIRE_MOUNT", "cannot mount a small file system here (needs root)")
    yield root
    subprocess.run(["umount", root], check=False)


def test_a_full_disk_answers_507_keeps_nothing_and_recovers(app, client, small_disk):
    headers = factories.headers(factories.token(factories.user("ada")))
    body = os.urandom(2 * 2**20)  # more than the disk holds
    full = client.put(
        "/api/v1/code", data=body, headers={**headers, "Content-Type": "application/gzip"}
    )
    assert full.status_code == 507, full.get_data(as_text=True)[:300]
    assert full.get_json()["error"]["code"] == "no_space"
    leftovers = [f for _, _, files in os.walk(small_disk) for f in files]
    assert leftovers == []  # no partial artifact
    subprocess.run(["mount", "-o", "remount,size=8m", small_disk], check=True)
    stored = client.put(
        "/api/v1/code", data=body, headers={**headers, "Content-Type": "application/gzip"}
    )
    assert stored.status_code == 201, stored.get_data(as_text=True)[:300]
