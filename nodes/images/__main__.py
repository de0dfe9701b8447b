"""`python -m nodes.images build` (what `podium image build` runs).

Builds a session base image in two steps, with no registry:
1. the root image: `debootstrap --variant=minbase` of a Debian suite with Python 3 (and,
   for the scientific variant, numpy, scipy, scikit-learn and pandas), from the
   distribution's packages as this machine's package manager reaches them, imported with
   `docker import`; its tag names the suite and a digest of the package list, so a
   changed list builds a new one, and an existing one is reused;
2. the base image: `nodes/images/base.Dockerfile` on top of it, with the SDK inside.

Variants: `minimal` → podium/base:latest, `scientific` → podium/scientific:latest.
"""

from __future__ import annotations

import argparse
import hashlib
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
MINIMAL = ["python3", "python3-venv", "python3-requests", "ca-certificates"]
VARIANTS = {
    "minimal": ("podium/base:latest", MINIMAL),
    "scientific": (
        "podium/scientific:latest",
        [*MINIMAL, "python3-numpy", "python3-scipy", "python3-sklearn", "python3-pandas"],
    ),
}
ROOT_REPOSITORY = "podium/debian-root"


def root_tag(suite: str, packages: list[str], mirror: str) -> str:
    digest = hashlib.sha256(f"{suite}\0{mirror}\0{','.join(packages)}".encode()).hexdigest()
    return f"{ROOT_REPOSITORY}:{suite}-{digest[:12]}"


def build_root(client, tag: str, suite: str, packages: list[str], mirror: str) -> None:
    if shutil.which("debootstrap") is None:
        raise SystemExit("podium image build: debootstrap is missing (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="podium-root-") as folder:
        root = Path(folder) / "root"
        print(f"debootstrap {suite} (minbase, {','.join(packages)}) …", flush=True)
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                suite,
                str(root),
                *([mirror] if mirror else []),
            ],
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
    build = commands.add_parser("build", help="build a session base image")
    build.add_argument("--variant", choices=sorted(VARIANTS), default="minimal")
    build.add_argument("--tag", help="the image's tag (default: the variant's)")
    build.add_argument("--suite", default="bookworm")
    build.add_argument(
        "--mirror",
        default="",
        help="the Debian mirror debootstrap and the image's apt-get use (default: "
        "debootstrap's own)",
    )
    build.add_argument("--rebuild-root", action="store_true")
    args = parser.parse_args(argv)
    default_tag, packages = VARIANTS[args.variant]
    tag = args.tag or default_tag
    root = root_tag(args.suite, packages, args.mirror)
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
            client.images.get(root)
        except ImageNotFound:
            build_root(client, root, args.suite, packages, args.mirror)
        build_base(client, tag, root)
    except (subprocess.CalledProcessError, BuildError, APIError) as exc:
        print(f"podium image build: {exc}", file=sys.stderr)
        return 1
    print(f"built {tag}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
