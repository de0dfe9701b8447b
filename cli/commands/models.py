"""Models: the checkpoints a session saved (`podium model ls`, `model pull`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from cli.archive import SESSION_ARCHIVE_BYTES, SESSION_ARCHIVE_FILES, spool, unpack_fresh
from cli.client import CliError
from cli.commands.sessions import session_path
from cli.context import client
from cli.output import human_size, listing


@click.group()
def model() -> None:
    """The checkpoints sessions saved (`sdk.save`)."""


@model.command("ls")
@click.argument("session")
@click.option("--json", "as_json", is_flag=True)
def model_ls(session: str, as_json: bool) -> None:
    """SESSION's checkpoints: name, step, size, time, and what it reported at that step."""
    listing(
        client().get(session_path(session) + "/checkpoints"),
        as_json,
        ["CHECKPOINT", "STEP", "SIZE", "SAVED (UTC)", "SCALARS AT THAT STEP"],
        lambda c: [
            c["name"],
            "-" if c.get("step") is None else str(c["step"]),
            human_size(c["size"]),
            (c["created_at"] or "").replace("T", " ").removesuffix("Z"),
            " ".join(f"{tag}={value:.6g}" for tag, value in (c.get("scalars") or {}).items()),
        ],
    )


@model.command("pull")
@click.argument("target", metavar="SESSION[:CHECKPOINT]")
@click.argument("dest", required=False, type=click.Path(file_okay=False, path_type=Path))
def model_pull(target: str, dest: Path | None) -> None:
    """Download a checkpoint (the last one saved unless named) into DEST (default:
    ./USER-N-CHECKPOINT)."""
    session, _, name = target.partition(":")
    api = client()
    if not name:
        saved = api.get(session_path(session) + "/checkpoints")
        if not saved:
            raise CliError(f"session {session} saved no checkpoint")
        name = max(saved, key=lambda c: c["created_at"] or "")["name"]
    dest = dest or Path(f"{session.replace('/', '-')}-{name}")
    if dest.exists() and any(dest.iterdir()):
        raise CliError(f"{dest} is not empty")
    path = session_path(session) + f"/checkpoints/{name}"
    response = api.call("GET", path, timeout=600, stream=True)
    with tempfile.TemporaryFile() as file:
        archive = spool(response.iter_content(2**20), file)
        unpack_fresh(
            archive, dest, max_bytes=SESSION_ARCHIVE_BYTES, max_members=SESSION_ARCHIVE_FILES
        )
    click.echo(f"{session}:{name} -> {dest}")


COMMANDS = [model]
