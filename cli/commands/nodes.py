"""`podium node ...`: compute nodes, for administrators."""

from __future__ import annotations

import click

from cli.client import CliError
from cli.context import client
from cli.output import emit_json, listing


@click.group()
def node() -> None:
    """Compute nodes (administrators)."""


@node.command("ls")
@click.option("--json", "as_json", is_flag=True)
def node_ls(as_json: bool) -> None:
    """Nodes with their GPUs and who holds them."""

    def row(n: dict) -> list[str]:
        held = sum(1 for g in n["gpus"] if g["session"])
        runs_for = ",".join(n.get("operators") or []) or ("anyone" if n["isolating"] else "trusted")
        return [
            n["name"],
            n["status"],
            n["runtime"],
            runs_for,
            str(n["cpu_count"]),
            f"{n['memory_mb']} MiB",
            f"{held}/{len(n['gpus'])}",
            n["last_heartbeat_at"] or "-",
        ]

    listing(
        client().get("/nodes"),
        as_json,
        ["NODE", "STATUS", "RUNTIME", "RUNS", "CPUS", "MEMORY", "GPUS HELD", "HEARTBEAT"],
        row,
    )


@node.command("drain")
@click.argument("name")
@click.option("--undo", is_flag=True, help="take new sessions again")
@click.option(
    "--migrate",
    is_flag=True,
    help="move its running sessions that bound `save` to other nodes, from a checkpoint",
)
def node_drain(name: str, undo: bool, migrate: bool) -> None:
    """Stop placing sessions on node NAME (what runs there goes on, or moves with
    --migrate)."""
    if undo and migrate:
        raise CliError("--migrate drains; it cannot go with --undo")
    body = client().post(f"/nodes/{name}/drain", json={"drained": not undo, "migrate": migrate})
    click.echo(f"node {body['name']} is {body['status']}")
    if body["migrating"]:
        click.echo("checkpointing to move elsewhere: " + ", ".join(body["migrating"]))
    if migrate and body["left_to_finish"]:
        click.echo("left to finish there (no `save` bound): " + ", ".join(body["left_to_finish"]))


@node.command("rm")
@click.argument("name")
def node_rm(name: str) -> None:
    """Remove node NAME: its token is refused at once and its sessions end as lost."""
    body = client().call("DELETE", f"/nodes/{name}").json()
    lost = body["lost"]
    click.echo(f"node {name} removed" + (f"; lost: {', '.join(lost)}" if lost else ""))


@node.group("token")
def token() -> None:
    """The cluster's join token, which new nodes register with."""


@token.command("rotate")
@click.option("--json", "as_json", is_flag=True)
def token_rotate(as_json: bool) -> None:
    """Make a new join token (shown once); the old one is refused from now on. Nodes
    registered already keep working with their own tokens."""
    body = client().post("/nodes/join-token")
    if as_json:
        emit_json(body)
    else:
        click.echo(body["join_token"])
        click.echo(
            "the previous join token no longer works; start new nodes with "
            "PODIUM_NODE_JOIN_TOKEN set to this one",
            err=True,
        )


@node.command("queue")
@click.option("--json", "as_json", is_flag=True)
def node_queue(as_json: bool) -> None:
    """Pending sessions in arrival order, and why each waits."""
    listing(
        client().get("/nodes/queue"),
        as_json,
        ["SESSION", "GPUS", "WAITING BECAUSE"],
        lambda s: [s["id"], str(s["gpus"]), s["status_reason"]],
    )


COMMANDS = [node]
