"""`podium serve S[:CKPT]` and `podium serve ls|show|stop|logs`: models served over
REST; `podium infer S[:CKPT] --input FILE`: predictions of a file."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from cli.client import CliError
from cli.commands import StartGroup
from cli.commands.sessions import FINAL, session_path
from cli.context import client
from cli.output import emit_json, listing


def split_ref(ref: str) -> tuple[str, str | None]:
    """`USER/N[:CKPT]`: the session, and the checkpoint (None: its last)."""
    session, _, checkpoint = ref.partition(":")
    return session, checkpoint or None


@click.group(cls=StartGroup)
def serve() -> None:
    """Serve a session's checkpoint over REST: `podium serve USER/N[:CKPT]`."""


@serve.command("start")
@click.argument("ref", metavar="SESSION[:CKPT]")
@click.option("--replicas", default=1, type=click.IntRange(1, 8), show_default=True)
@click.option(
    "-g",
    "--gpus",
    default=0,
    type=click.FloatRange(min=0),
    help="each replica's GPUs (0.25: a share)",
)
@click.option("--name", help="where it answers: /api/v1/serve/NAME/predict")
@click.option(
    "--timeout",
    default=30.0,
    type=click.FloatRange(1, 300),
    show_default=True,
    help="seconds a request may wait for its answer",
)
def start(ref: str, replicas: int, gpus: float, name: str | None, timeout: float) -> None:
    """Start serving SESSION's checkpoint (its last unless :CKPT names one)."""
    session, checkpoint = split_ref(ref)
    api = client()
    server = api.post(
        "/serve",
        json={
            "session": session,
            "checkpoint": checkpoint,
            "replicas": replicas,
            "gpus": int(gpus) if gpus == int(gpus) else gpus,
            "name": name,
            "timeout_s": timeout,
        },
    )
    click.echo(server["name"])
    click.echo(
        f"predictions at {api.api}/serve/{server['name']}/predict once a replica is ready "
        f"(podium serve show {server['name']})",
        err=True,
    )


@serve.command("ls")
@click.option("--all", "everyone", is_flag=True, help="everyone's (administrators)")
@click.option("--json", "as_json", is_flag=True)
def ls(everyone: bool, as_json: bool) -> None:
    """Your servers, newest first."""
    found = client().get("/serve", params={"all": "true"} if everyone else None)
    listing(
        found,
        as_json,
        ["NAME", "STATUS", "SERVES", "REPLICAS", "RESTARTS"],
        lambda s: [
            s["name"],
            s["status"],
            f"{s['source']}:{s['checkpoint']}",
            str(s["replicas"]),
            str(s["restarts"]),
        ],
    )


@serve.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def show(name: str, as_json: bool) -> None:
    """A server: its replicas, requests, errors and latencies."""
    found = client().get(f"/serve/{name}")
    if as_json:
        emit_json(found)
        return
    stats = found["stats"]
    click.echo(f"{found['name']}  {found['status']}: {found['status_reason']}")
    click.echo(f"serves {found['source']} at checkpoint {found['checkpoint']}")
    click.echo(
        f"replicas: {stats['ready_replicas']} ready of {found['replicas']}; "
        + ", ".join(f"{s['id']} {s['status']}" for s in found["sessions"])
    )
    p50, p99 = stats["latency_ms_p50"], stats["latency_ms_p99"]
    click.echo(
        f"requests: {stats['requests']}, answered {stats['answered']}, errors {stats['errors']}, "
        f"timeouts {stats['timeouts']}, refused {stats['refused']}"
        + (f"; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms" if p50 is not None else "")
    )


@serve.command("stop")
@click.argument("name")
def stop(name: str) -> None:
    """Stop a server and its replicas."""
    found = client().post(f"/serve/{name}/stop")
    click.echo(f"{found['name']} stopped")


@serve.command("logs")
@click.argument("name")
def logs(name: str) -> None:
    """The logs of a server's replicas, the latest last."""
    api = client()
    found = api.get(f"/serve/{name}")
    for replica in found["sessions"]:
        click.echo(f"==> {replica['id']} ({replica['status']})")
        after = -1
        while lines := api.get(
            session_path(replica["id"]) + "/logs", params={"after": after, "limit": 5000}
        )["lines"]:
            for line in lines:
                click.echo(line["text"])
            after = lines[-1]["seq"]


@click.command()
@click.argument("ref", metavar="SESSION[:CKPT]")
@click.option(
    "--input", "input_file", required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="where the predictions go [default: stdout]",
)
def infer(ref: str, input_file: Path, output: Path | None) -> None:
    """Predict FILE with SESSION's checkpoint (its bound infer), in a session of yours."""
    if not input_file.is_file():
        raise CliError(f"no such file: {input_file}")
    session, checkpoint = split_ref(ref)
    api = client()
    with input_file.open("rb") as body:
        created = api.post(
            session_path(session) + "/infer",
            params={"checkpoint": checkpoint} if checkpoint else None,
            data=body,
            headers={"Content-Type": "application/octet-stream"},
        )
    ident = created["id"]
    click.echo(f"{ident} predicts {input_file}", err=True)
    while (found := api.get(session_path(ident)))["status"] not in FINAL:
        time.sleep(0.5)
    if found["status"] != "completed":
        raise CliError(f"{ident} {found['status']}: {found['status_reason']} (podium logs {ident})")
    response = api.call("GET", session_path(ident) + "/predictions")
    if output is None:
        sys.stdout.write(response.text)
    else:
        output.write_bytes(response.content)
        click.echo(f"predictions written to {output}", err=True)


COMMANDS = [serve, infer]
