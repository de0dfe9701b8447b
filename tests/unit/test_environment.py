"""The rules of a session's environment, shared by the portal and the nodes."""

import pytest

from nodes.environment import (
    Environment,
    InvalidEnvironment,
    check_requirements,
    dockerfile_bases,
    normalise,
)


def test_the_digest_follows_every_file_and_the_base():
    plain = Environment(requirements="torch\n")
    assert plain.tag == f"podium/env:{plain.digest[:32]}"
    others = [
        Environment(requirements="torch==2.13.0\n"),
        Environment(requirements="torch\n", apt="libgomp1\n"),
        Environment(requirements="torch\n", base="podium/scientific:latest"),
        Environment(requirements="", apt="torch\n"),  # the same text in another file
    ]
    assert len({plain.digest, *(e.digest for e in others)}) == 5
    # A Dockerfile names its own base: the default base is not part of its digest.
    dockerfile = "FROM podium/scientific\n"
    assert Environment(dockerfile=dockerfile).digest == (
        Environment(dockerfile=dockerfile, base="podium/base:other").digest
    )


def test_files_that_ask_for_nothing_make_no_environment():
    assert Environment.from_files({}) is None
    assert Environment.from_files({"requirements.txt": b"# later\n\n", "apt.txt": b""}) is None


def test_requirements_may_name_packages_and_nothing_else():
    assert check_requirements("numpy>=2  # comment\ntorch[opt]==2.13.0; python_version>'3'\n")
    for line in ("--extra-index-url https://x", "-r other.txt", "pkg @ file:///etc/passwd"):
        with pytest.raises(InvalidEnvironment):
            check_requirements(line)
    with pytest.raises(InvalidEnvironment, match="not UTF-8"):
        Environment.from_files({"requirements.txt": b"\xff\xfe"})


def test_dockerfile_bases_skip_earlier_stages_and_options():
    text = (
        "FROM --platform=linux/amd64 podium/base:latest AS build\n"
        "RUN make \\\n  all\n"
        "FROM build\n"
        "from podium/scientific\n"
    )
    assert dockerfile_bases(text) == ["podium/base:latest", "podium/scientific"]


def test_image_names_are_normalised():
    assert normalise("podium/base") == "podium/base:latest"
    assert normalise("registry:5000/lab/img") == "registry:5000/lab/img:latest"
    assert normalise("lab/img@sha256:abc") == "lab/img@sha256:abc"
