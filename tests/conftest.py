"""Fixtures shared by every test: an embedded Redis, the portal built by its migrations
(SQLite, and PostgreSQL where one is configured), and factories."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import upgrade
from redis import Redis
from sqlalchemy import create_engine, text

from portal import create_app
from portal.extensions import db
from portal.redis_server import EmbeddedRedis
from portal.services import sealing

JOIN_TOKEN = "test-join-token"
POSTGRES_URL = os.environ.get("PODIUM_TEST_POSTGRES_URL")
GRADER_PUBLIC_KEY = ""


def require(flag: str, reason: str) -> None:
    """Skip for want of a service, or fail where CI says the service must be there."""
    if os.environ.get(flag) == "1":
        pytest.fail(f"{reason} (and {flag}=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis(redis_url) -> Iterator[Redis]:
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    yield connection
    connection.close()


def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'podium.db'}"
    if not POSTGRES_URL:
        require("PODIUM_REQUIRE_POSTGRES", "no PostgreSQL: set PODIUM_TEST_POSTGRES_URL")
    assert POSTGRES_URL
    reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture(autouse=True)
def passable_tmp_path(request) -> None:
    """A root node agent runs local sessions as unprivileged users, who must pass
    through the folders above theirs: pytest makes its temporary folders 0700. Only the
    right to pass (o+x) is added, never to list or read."""
    if "tmp_path" in request.fixturenames:
        make_passable(request.getfixturevalue("tmp_path"))


def make_passable(folder: Path) -> None:
    if os.geteuid() != 0:
        return
    for path in (folder, *folder.parents):
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


@pytest.fixture(scope="session", autouse=True)
def grader_key(tmp_path_factory) -> Iterator[str]:
    """The grader's key pair: the portal gets the public half, the grader (this test
    process) reads the secret file named in PODIUM_GRADER_KEY_FILE."""
    global GRADER_PUBLIC_KEY
    path = tmp_path_factory.mktemp("grader") / "secret.key"
    GRADER_PUBLIC_KEY = sealing.new_secret_key(path)
    os.environ["PODIUM_GRADER_KEY_FILE"] = str(path)
    yield GRADER_PUBLIC_KEY
    os.environ.pop("PODIUM_GRADER_KEY_FILE", None)


def build_app(instance: Path, database_url: str, redis_url: str | None, **extra) -> Flask:
    config = {
        "INSTANCE_PATH": str(instance),
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_url,
        "NODE_JOIN_TOKEN": JOIN_TOKEN,
        "ARTIFACT_ROOT": str(instance / "artifacts"),
        "WTF_CSRF_ENABLED": True,
        "GRADER_PUBLIC_KEY": GRADER_PUBLIC_KEY,
        **extra,
    }
    app = create_app(config)
    with app.app_context():
        upgrade()
    return app


@pytest.fixture
def app(tmp_path, database_url, redis_url, redis) -> Iterator[Flask]:
    app = build_app(tmp_path / "instance", database_url, redis_url)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()
    if (live := app.extensions.get("live")) is not None:
        live.close()


@pytest.fixture
def client(app):
    return app.test_client()
