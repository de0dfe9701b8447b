"""Session environments on a real Docker engine: built from the code folder's files once
per node, waited for by concurrent sessions, failed clearly, evicted when old.

Packages come from a wheel folder made here and an empty local index, so nothing is
fetched from a registry and the tests run the same on any machine.
"""

import contextlib
import os
import tempfile
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from nodes.environment import Environment, is_base
from nodes.runtime import RunSpec, get_runtime
from nodes.runtime.environments import BuildFailed, PackageSettings

PACKAGE = "podium_testpkg"


def _wheel(folder: Path, version: str) -> None:
    name = f"{PACKAGE}-{version}"
    with zipfile.ZipFile(folder / f"{name}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{PACKAGE}/__init__.py", f"VERSION = {version!r}\n")
        wheel.writestr(
            f"{name}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n",
        )
        wheel.writestr(
            f"{name}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: podium-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        )
        wheel.writestr(f"{name}.dist-info/RECORD", "")


@pytest.fixture(scope="module")
def packages():
    """A site's package settings: a wheel folder and an (empty) index, both local."""
    with tempfile.TemporaryDirectory(prefix="podium-wheels-") as folder:
        root = Path(folder)
        wheels, index = root / "wheels", root / "index"
        for path in (root, wheels, index):
            path.mkdir(exist_ok=True)
            path.chmod(0o755)
        for version in ("1.0", "2.0"):
            _wheel(wheels, version)
            (wheels / f"{PACKAGE}-{version}-py3-none-any.whl").chmod(0o644)
        yield PackageSettings(index_url=f"file://{index}", find_links=(str(wheels),))


@pytest.fixture
def built(docker_client):
    """Environment tags a test built: removed after it."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        with contextlib.suppress(Exception):
            docker_client.images.remove(tag, force=True)


def runtime_with(docker_client, packages, tmp_path, **options):
    return get_runtime(
        "docker",
        client=docker_client,
        node="test",
        packages=packages,
        environments_file=tmp_path / "environments.json",
        **options,
    )


def session(tmp_path: Path, files: dict[str, str], *, number=1, trusted=True, image="") -> RunSpec:
    code = tmp_path / f"s{number}" / "code"
    output = tmp_path / f"s{number}" / "output"
    code.mkdir(parents=True)
    output.mkdir()
    for name, text in {"main.py": "print('hello')\n", **files}.items():
        (code / name).write_text(text)
    # What the portal read at submission (an image named outright takes none).
    wanted = (
        None
        if image and not is_base(image)
        else Environment.from_files({n: t.encode() for n, t in files.items()}, base=image)
    )
    return RunSpec(
        session_id=number,
        ident=f"ada/{number}",
        entry="main.py",
        args=[],
        code_dir=code,
        output_dir=output,
        gpu_indices=[],
        cpus=1,
        memory_mb=256,
        trusted=trusted,
        image=image,
        environment=wanted.digest if wanted else "",
    )


def build_containers(client):
    return [c for c in client.containers.list(all=True) if c.name.startswith("podium-build-test-")]


def test_a_requirements_file_builds_once_and_the_session_runs_in_it(
    docker_client, packages, tmp_path, built
):
    runtime = runtime_with(docker_client, packages, tmp_path)
    files = {
        "requirements.txt": f"{PACKAGE}==2.0\n",
        "main.py": f"import os, {PACKAGE}\nprint({PACKAGE}.VERSION, os.getuid())\n",
    }
    lines: list[str] = []
    prepared = runtime.prepare(session(tmp_path, files), lines.append)
    built.append(prepared.image)
    assert prepared.image == Environment(requirements=f"{PACKAGE}==2.0\n").tag
    assert any("built in" in line for line in lines), lines
    assert any(f"Successfully installed {PACKAGE}" in line.replace("-", "_") for line in lines)
    run = runtime.start(prepared)
    assert list(run.output()) == [f"2.0 {os.getuid() or 65534}"]
    assert run.wait().exit_code == 0
    runtime.finished(run)

    again: list[str] = []
    second = runtime.prepare(session(tmp_path, files, number=2), again.append)
    assert second.image == prepared.image
    assert again == [f"podium: environment {prepared.image} is on this node already"]
    (held,) = [row for row in runtime.environments() if row["tag"] == prepared.image]
    assert held["size_bytes"] > 0 and held["in_use"]  # handed to session 2, not yet started
    runtime.builder.release(second.image)
    (held,) = [row for row in runtime.environments() if row["tag"] == prepared.image]
    assert not held["in_use"]
    assert build_containers(docker_client) == []


def test_concurrent_sessions_wait_for_one_build(docker_client, packages, tmp_path, built):
    runtime = runtime_with(docker_client, packages, tmp_path)
    files = {"requirements.txt": f"{PACKAGE}==1.0  # the older one\n"}
    logs: list[list[str]] = [[], [], []]
    images: list[str] = []

    def prepare(number: int) -> None:
        spec = runtime.prepare(session(tmp_path, files, number=number), logs[number - 1].append)
        images.append(spec.image)

    threads = [threading.Thread(target=prepare, args=(n,)) for n in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    built.extend(set(images))
    assert len(images) == 3 and len(set(images)) == 1
    builds = [log for log in logs if any(line.startswith("podium: building") for line in log)]
    assert len(builds) == 1, logs
    for log in logs:
        if log is not builds[0]:
            assert log[-1] == f"podium: environment {images[0]} is on this node already"


def test_a_requirement_that_does_not_exist_fails_clearly_and_leaves_nothing(
    docker_client, packages, tmp_path
):
    runtime = runtime_with(docker_client, packages, tmp_path)
    before = {image.id for image in docker_client.images.list(all=True)}
    files = {"requirements.txt": "podium-no-such-package==9.9\n"}
    lines: list[str] = []
    with pytest.raises(BuildFailed) as failed:
        runtime.prepare(session(tmp_path, files), lines.append)
    message = str(failed.value)
    assert message.startswith(
        f"the environment {Environment(requirements=files['requirements.txt']).tag} did not build"
    )
    assert "podium-no-such-package==9.9" in message and "No matching distribution" in message
    assert any("No matching distribution" in line for line in lines)
    assert {image.id for image in docker_client.images.list(all=True)} == before
    assert build_containers(docker_client) == []


def test_a_failing_dockerfile_leaves_no_half_built_image(docker_client, packages, tmp_path):
    runtime = runtime_with(docker_client, packages, tmp_path)
    before = {image.id for image in docker_client.images.list(all=True)}
    dockerfile = "FROM podium/base\nRUN echo first step > /tmp/first\nRUN echo doomed && false\n"
    lines: list[str] = []
    with pytest.raises(BuildFailed) as failed:
        runtime.prepare(session(tmp_path, {"Dockerfile": dockerfile}), lines.append)
    assert "its Dockerfile failed" in str(failed.value) and "doomed" in str(failed.value)
    assert {image.id for image in docker_client.images.list(all=True)} == before
    assert not docker_client.containers.list(
        all=True, filters={"status": "exited", "ancestor": "podium/base"}
    )


def test_a_dockerfile_with_requirements_on_top(docker_client, packages, tmp_path, built):
    runtime = runtime_with(docker_client, packages, tmp_path)
    files = {
        "Dockerfile": "FROM podium/base:latest\nRUN echo from-the-dockerfile > /opt/marker\n",
        "requirements.txt": f"{PACKAGE}\n",
        "main.py": f"import {PACKAGE}\n"
        f"print(open('/opt/marker').read().strip(), {PACKAGE}.VERSION)\n",
    }
    prepared = runtime.prepare(session(tmp_path, files), lambda line: None)
    built.append(prepared.image)
    run = runtime.start(prepared)
    assert list(run.output()) == ["from-the-dockerfile 2.0"]
    assert run.wait().exit_code == 0
    runtime.finished(run)


def test_only_trusted_users_dockerfiles_are_built(docker_client, packages, tmp_path):
    runtime = runtime_with(docker_client, packages, tmp_path)
    spec = session(tmp_path, {"Dockerfile": "FROM podium/base\nRUN id\n"}, trusted=False)
    with pytest.raises(BuildFailed, match="needs a trusted account"):
        runtime.prepare(spec, lambda line: None)


def test_an_image_named_outright_is_not_built_on(docker_client, packages, tmp_path):
    runtime = runtime_with(docker_client, packages, tmp_path)
    spec = session(tmp_path, {"requirements.txt": f"{PACKAGE}\n"}, image="lab/cuda:12")
    assert spec.environment == ""
    assert runtime.prepare(spec, lambda line: None) is spec
    # Environment images are the nodes' own: one user's cannot be named by another.
    taken = replace(spec, image=Environment(requirements=f"{PACKAGE}\n").tag)
    with pytest.raises(BuildFailed, match="is made by the nodes"):
        runtime.prepare(taken, lambda line: None)


def test_the_node_builds_only_what_the_portal_read(docker_client, packages, tmp_path):
    """Files that differ from those digested at submission (an archive whose links the
    portal and the node would read differently) stop the session."""
    runtime = runtime_with(docker_client, packages, tmp_path)
    spec = session(tmp_path, {"requirements.txt": f"{PACKAGE}\n"})
    (spec.code_dir / "Dockerfile").write_text("FROM podium/base\nRUN id\n")
    with pytest.raises(BuildFailed, match="not those read when it was submitted"):
        runtime.prepare(spec, lambda line: None)
    plain = session(tmp_path, {}, number=2)
    (plain.code_dir / "requirements.txt").symlink_to("/etc/hostname")
    with pytest.raises(BuildFailed, match=r"requirements\.txt is not a plain file"):
        runtime.prepare(plain, lambda line: None)


def test_old_environments_go_first_and_never_one_in_use(docker_client, packages, tmp_path, built):
    runtime = runtime_with(docker_client, packages, tmp_path, environments_budget_bytes=0)
    first = runtime.prepare(
        session(tmp_path, {"requirements.txt": f"{PACKAGE}==1.0  # first\n"}), lambda _: None
    )
    built.append(first.image)
    holder = runtime.start(first)
    second = runtime.prepare(
        session(tmp_path, {"requirements.txt": f"{PACKAGE}==2.0  # second\n"}, number=2),
        lambda _: None,
    )
    built.append(second.image)
    # Over a budget of nothing, and yet: `first` has its container, `second` was just
    # handed to a session that has none yet.
    tags = {row["tag"]: row for row in runtime.environments() if row["tag"] in built}
    assert set(tags) == {first.image, second.image}
    assert tags[first.image]["in_use"]
    holder.wait()
    runtime.finished(holder)
    third = runtime.prepare(
        session(tmp_path, {"requirements.txt": f"{PACKAGE}  # third\n"}, number=3), lambda _: None
    )
    built.append(third.image)
    # The first, unused now, went when the third was built; the second is still handed
    # out, the third too.
    assert {row["tag"] for row in runtime.environments()} & set(built) == {
        second.image,
        third.image,
    }
    runtime.builder.release(second.image)
    assert second.image in runtime.builder.evict()
    assert {row["tag"] for row in runtime.environments()} & set(built) == {third.image}
