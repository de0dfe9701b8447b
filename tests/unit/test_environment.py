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


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        # Docker drops a comment line inside a continued instruction: the next FROM counts.
        ("FROM podium/base\n# note \\\nFROM evil/image\n", "FROM evil/image"),
        ("FROM podium/base\nCOPY --from=evil/image /bin/x /x\n", "FROM evil/image"),
        ("FROM podium/base\nRUN --mount=type=bind,from=evil/image true\n", "FROM evil/image"),
        ("# escape=`\nFROM podium/base\n", "escape directive"),
        ("FROM podium/base\nADD https://example.org/x.tgz /x\n", "ADD of a URL"),
    ],
)
def test_a_dockerfile_starts_and_copies_from_podium_bases_only(dockerfile, message):
    with pytest.raises(InvalidEnvironment, match=message):
        Environment.from_files({"Dockerfile": dockerfile.encode()})


def test_requirements_files_as_tools_write_them():
    hashed = (
        "\ufeffnumpy==2.1.0 \\\n"
        "    --hash=sha256:0123456789abcdef \\\n"
        "    --hash=sha256:fedcba9876543210\n"
        "--prefer-binary\n"
        "torch[opt]==2.13.0 ; python_version >= '3.11'\n"
    )
    assert check_requirements(hashed.lstrip("\ufeff")) == [
        "numpy==2.1.0",
        'torch[opt]==2.13.0; python_version >= "3.11"',
    ]
    assert Environment.from_files({"requirements.txt": hashed.encode()}) is not None
    for line, message in [
        ("numpy  # pinned later \\\nevil", "hides the next line"),
        ("local-build.whl", "names a URL or a file"),
        ("-e .", "pip options other than"),
        ("numpy --global-option=x", "only --hash may follow"),
    ]:
        with pytest.raises(InvalidEnvironment, match=message):
            check_requirements(line)
    with pytest.raises(InvalidEnvironment, match="not a Debian package name"):
        Environment.from_files({"apt.txt": b"libgomp1 curl-\n"})
