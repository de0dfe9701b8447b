"""What `podium up` picks when nobody says: isolation wherever an engine answers."""

import os

from portal.stack import choose_runtime, docker_answers, runtime_warnings
from tests.conftest import require


def test_without_an_engine_the_runtime_is_local_and_says_what_that_disables(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    assert not docker_answers()
    assert choose_runtime(demo=False) == "local"
    [warning] = runtime_warnings("local", demo=False)
    assert "no Docker engine answers" in warning
    expected = "only trusted users' code may run" if os.geteuid() == 0 else "only admin's code"
    assert expected in warning


def test_the_demo_runs_its_trusted_users_code_locally_without_a_warning(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    assert choose_runtime(demo=True) == "local"
    assert runtime_warnings("local", demo=True) == []


def test_where_an_engine_answers_strangers_code_runs_in_containers():
    if not docker_answers():
        require("PODIUM_REQUIRE_DOCKER", "no Docker engine answers here")
    assert choose_runtime(demo=False) == "docker"
    assert runtime_warnings("docker", demo=False) == []
