"""`podium dataset ...`: versioned datasets, pushed, listed, pulled and removed."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click

from cli.archive import DATASET_MEMBERS, spool, unpack_fresh
from cli.client import CliError
from cli.context import client
from cli.output import human_size, listing


@click.group()
def dataset() -> None:
    """Versioned datasets."""


@dataset.command("push")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--public", "visibility", flag_value="public", help="readable by everyone")
@click.option("--private", "visibility", flag_value="private", help="readable by you only")
@click.option("--team", help="readable by this team's members")
@click.option("--description", help="what it holds")
def dataset_push(
    name: str, path: Path, visibility: str | None, team: str | None, description: str | None
) -> None:
    """Upload a folder (or a .tar.gz) as the next version of NAME."""
    from tqdm import tqdm

    from cli.pack import pack

    api = client()
    with tempfile.TemporaryFile() as archive:
        if path.is_dir():
            pack(path, archive, max_bytes=2**62)
        else:
            with path.open("rb") as source:
                shutil.copyfileobj(source, archive)
        size = archive.tell()
        archive.seek(0)
        query = {
            k: v
            for k, v in (("visibility", visibility), ("team", team), ("description", description))
            if v is not None
        }
        with tqdm.wrapattr(
            archive,
            "read",
            total=size,
            desc=f"uploading {name}",
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            leave=False,
            disable=size < 1024 * 1024 or None,
        ) as reader:
            body = api._json(
                api.call(
                    "POST",
                    f"/datasets/{name}/versions",
                    data=reader,
                    params=query,
                    headers={"Content-Type": "application/gzip", "Content-Length": str(size)},
                    timeout=3600,
                )
            )
    version = body["version"]
    note = "new version" if body["created"] else "unchanged: no new version"
    click.echo(
        f"{version['ref']} ({note}, {version['file_count']} files, "
        f"{human_size(version['size_bytes'])})"
    )


@dataset.command("ls")
@click.option("--json", "as_json", is_flag=True)
def dataset_ls(as_json: bool) -> None:
    """Datasets you may read."""
    datasets = client().get("/datasets")
    listing(
        datasets,
        as_json,
        ["NAME", "OWNER", "VISIBILITY", "VERSIONS", "SIZE", "LAST ACCESS", "DESCRIPTION"],
        lambda d: [
            d["name"],
            d["owner"],
            d["visibility"] + (f":{d['team']}" if d["team"] else ""),
            str(len(d["versions"])),
            human_size(d["size_bytes"]),
            (d["last_accessed_at"] or "").replace("T", " ").removesuffix("Z"),
            d["description"][:40],
        ],
    )


@dataset.command("pull")
@click.argument("ref")
@click.argument("dest", required=False, type=click.Path(path_type=Path))
def dataset_pull(ref: str, dest: Path | None) -> None:
    """Download NAME[:VERSION] and unpack it into DEST (default ./NAME)."""
    api = client()
    name, _, number = ref.partition(":")
    versions = api.get(f"/datasets/{name}")["versions"]
    if not versions:
        raise CliError(f"dataset {name} has no version")
    number = number or str(versions[-1]["number"])
    version = next((v for v in versions if str(v["number"]) == number), None)
    if version is None:
        raise CliError(f"dataset {name} has no version {number}")
    target = dest or Path(name)
    if target.exists() and any(target.iterdir()):
        raise CliError(f"{target} is not empty")
    response = api.call("GET", f"/datasets/{name}/versions/{number}/archive", stream=True)
    with tempfile.TemporaryFile() as file:
        archive = spool(response.iter_content(2**20), file)
        # What the portal measured at upload, and no more.
        unpack_fresh(archive, target, max_bytes=version["size_bytes"], max_members=DATASET_MEMBERS)
    click.echo(f"{name}:{number} → {target}")


@dataset.command("rm")
@click.argument("ref")
def dataset_rm(ref: str) -> None:
    """Remove NAME (every version) or one version NAME:VERSION."""
    name, _, number = ref.partition(":")
    path = f"/datasets/{name}" + (f"/versions/{number}" if number else "")
    client().call("DELETE", path)
    click.echo(f"removed {ref}")


COMMANDS = [dataset]
