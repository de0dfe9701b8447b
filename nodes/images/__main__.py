"""`python -m nodes.images build` (what `podium image build` runs).

Builds the session base image in two steps, with no registry:
1. the root image: `debootstrap --variant=minbase` of a Debian suite with Python 3 and
   requests, from the distribution's packages as this machine's package manager reaches
   them, imported with `docker import` (skipped when the root image exists);
2. the base image: `nodes/images/base.Dockerfile` on top of it, with the SDK inside.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, DockerException, ImageNotFound

HERE = Path(__file__).resolve().parent
SDK_PACKAGE = HERE.parent.parent / "cli"
PACKAGES = "python3,python3-requests,ca-certificates"


def build_root(client, tag: str, suite: str) -> None:
    if shutil.which("debootstrap") is None:
        raise SystemExit("podium image build: debootstrap is missing (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="podium-root-") as folder:
        root = Path(folder) / "root"
        print(f"debootstrap {suite} (minbase, {PACKAGES}) …", flush=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", suite, str(root)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        archive = Path(folder) / "root.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        repository, _, version = tag.partition(":")
        print(f"docker import → {tag}", flush=True)
        client.api.import_image_from_file(
            str(archive), repository=repository, tag=version or "latest"
        )


def build_base(client, tag: str, root: str) -> None:
    with tempfile.TemporaryDirectory(prefix="podium-image-") as folder:
        context = Path(folder)
        shutil.copy(HERE / "base.Dockerfile", context / "Dockerfile")
        shutil.copytree(
            SDK_PACKAGE, context / "cli", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        print(f"docker build → {tag}", flush=True)
        client.images.build(path=str(context), tag=tag, buildargs={"ROOT": root}, rm=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="podium image",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the session base image")
    build.add_argument("--tag", default="podium/base:latest")
    build.add_argument("--root", default="podium/debian-root:bookworm")
    build.add_argument("--suite", default="bookworm")
    build.add_argument("--rebuild-root", action="store_true")
    args = parser.parse_args(argv)
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        print(f"podium image build: no Docker engine answers ({exc})", file=sys.stderr)
        return 1
    try:
        try:
            if args.rebuild_root:
                raise ImageNotFound("rebuild")
            client.images.get(args.root)
        except ImageNotFound:
            build_root(client, args.root, args.suite)
        build_base(client, args.tag, args.root)
    except (subprocess.CalledProcessError, BuildError, APIError) as exc:
        print(f"podium image build: {exc}", file=sys.stderr)
        return 1
    print(f"built {args.tag}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
