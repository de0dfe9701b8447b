"""A session's environment is known, and checked, when it is submitted: the digest the
nodes build it under, the scheduler's locality, `podium env ls`."""

from __future__ import annotations

import io
import tarfile

import pytest

from nodes.environment import Environment
from portal.extensions import db
from portal.models import Level, Session
from scheduler.loop import request_of
from tests import factories
from tests.api.test_api import code_archive

HEARTBEAT = "/api/v1/internal/nodes/heartbeat"


def submit(client, headers, files: dict[str, str], **options):
    digest = client.put("/api/v1/code", data=code_archive(files), headers=headers).get_json()
    return client.post(
        "/api/v1/sessions",
        json={"entry": "train.py", "code_digest": digest["digest"], **options},
        headers=headers,
    )


@pytest.fixture
def ada(app):
    factories.node("docker-1", runtime="docker")
    return factories.headers(factories.token(factories.user("ada")))


def test_the_environment_is_known_at_submission(client, ada):
    requirements = "torch==2.13.0\nscikit-learn  # its bundled digits\n"
    created = submit(client, ada, {"train.py": "", "requirements.txt": requirements})
    assert created.status_code == 201, created.get_json()
    tag = Environment(requirements=requirements).tag
    assert created.get_json()["environment"] == tag
    session = db.session.query(Session).one()
    assert request_of(session).image == tag  # the scheduler prefers nodes that hold it

    forked = client.post("/api/v1/sessions/ada/1/fork", json={}, headers=ada).get_json()
    assert forked["environment"] == tag

    # On a Podium base named with --image, the environment builds on it: another image.
    scientific = submit(
        client,
        ada,
        {"train.py": "", "requirements.txt": requirements},
        image="podium/scientific",
    ).get_json()
    assert scientific["environment"] == (
        Environment(requirements=requirements, base="podium/scientific:latest").tag
    )
    assert scientific["environment"] != tag
    # Any other image is taken as it is.
    outright = submit(
        client, ada, {"train.py": "", "requirements.txt": requirements}, image="lab/cuda:12"
    ).get_json()
    assert outright["environment"] == ""
    assert request_of(db.session.get(Session, 4)).image == "lab/cuda:12"
    plain = submit(client, ada, {"train.py": "", "requirements.txt": "# nothing yet\n"})
    assert plain.get_json()["environment"] == ""


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"requirements.txt": "numpy\n-i https://elsewhere/simple\n"}, "line 2: '-i https"),
        ({"requirements.txt": "evil @ https://example/evil.whl\n"}, "names a URL"),
        ({"requirements.txt": "git+https://example/repo\n"}, "is not a requirement"),
        ({"apt.txt": "curl; rm -rf /\n"}, "'curl;' is not a Debian package name"),
        ({"Dockerfile": "FROM debian:bookworm\n"}, "FROM debian:bookworm: an environment"),
        ({"Dockerfile": "ARG B=debian\nFROM ${B}\n"}, "must be named, not a variable"),
        ({"requirements.txt": "x" * 70_000}, "larger than 64 KiB"),
    ],
)
def test_environments_no_build_could_accept_are_refused_at_once(client, ada, files, message):
    refused = submit(client, ada, {"train.py": "", **files})
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert error["code"] == "invalid_environment" and message in error["message"], error
    assert db.session.query(Session).count() == 0


def test_a_strangers_dockerfile_is_refused_a_trusted_users_is_not(client, app):
    factories.node("docker-1", runtime="docker")
    stranger = factories.headers(factories.token(factories.user("sam", level=Level.USER)))
    dockerfile = {"train.py": "", "Dockerfile": "FROM podium/base\nRUN id\n"}
    refused = submit(client, stranger, dockerfile)
    assert refused.status_code == 422
    assert "needs a trusted account" in refused.get_json()["error"]["message"]
    trusted = factories.headers(factories.token(factories.user("tess")))
    assert submit(client, trusted, dockerfile).status_code == 201
    # requirements.txt and apt.txt are for everyone.
    allowed = submit(client, stranger, {"train.py": "", "apt.txt": "libgomp1\n"})
    assert allowed.status_code == 201, allowed.get_json()


def test_env_ls_shows_each_user_their_own_environments(client, app, ada):
    _, secret = factories.node("docker-2", runtime="docker")
    mine = submit(client, ada, {"train.py": "", "requirements.txt": "numpy\n"}).get_json()
    other = Environment(requirements="pandas\n").tag
    beat = client.post(
        HEARTBEAT,
        json={
            "environments": [
                {"tag": mine["environment"], "size_bytes": 10, "last_used_at": "", "in_use": True},
                {"tag": other, "size_bytes": 20, "last_used_at": "2026-11-30T05:00:00Z"},
                {"tag": "podium/base:latest", "size_bytes": 5},  # not an environment
            ]
        },
        headers=factories.headers(secret),
    )
    assert beat.status_code == 200
    listed = client.get("/api/v1/environments", headers=ada).get_json()
    assert listed == [
        {
            "node": "docker-2",
            "tag": mine["environment"],
            "size_bytes": 10,
            "last_used_at": "",
            "in_use": True,
        }
    ]
    admin = factories.headers(factories.token(factories.user("root", admin=True)))
    everything = client.get("/api/v1/environments", headers=admin).get_json()
    assert [row["tag"] for row in everything] == sorted([mine["environment"], other])
    assert client.get("/api/v1/environments").status_code == 401


def test_nodes_images_are_never_named_outright_nor_environment_files_linked(client, ada):
    files = {"train.py": "", "requirements.txt": "numpy\n"}
    taken = submit(client, ada, files, image=Environment(requirements="numpy\n").tag)
    assert taken.status_code == 400
    assert "is made by the nodes" in taken.get_json()["error"]["message"]
    # A requirements.txt that is a link would read one way here and another on a node.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        entry = tarfile.TarInfo("train.py")
        tar.addfile(entry, io.BytesIO(b""))
        link = tarfile.TarInfo("requirements.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "train.py"
        tar.addfile(link)
    digest = client.put("/api/v1/code", data=buffer.getvalue(), headers=ada).get_json()["digest"]
    linked = client.post(
        "/api/v1/sessions", json={"entry": "train.py", "code_digest": digest}, headers=ada
    )
    assert linked.status_code == 422
    assert (
        "requirements.txt: this file must be a plain file" in linked.get_json()["error"]["message"]
    )
    assert db.session.query(Session).count() == 0
