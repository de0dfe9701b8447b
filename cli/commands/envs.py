"""`podium env ...`: the environment images sessions run in, on each node."""

from __future__ import annotations

import click

from cli.context import client
from cli.output import human_size, listing


@click.group("env")
def env() -> None:
    """Session environments (built from requirements.txt, apt.txt or a Dockerfile)."""


@env.command("ls")
@click.option("--json", "as_json", is_flag=True)
def env_ls(as_json: bool) -> None:
    """Environment images on each node: size, last use, whether a session uses one.
    Administrators see every one; others those of their own sessions."""
    listing(
        client().get("/environments"),
        as_json,
        ["NODE", "IMAGE", "SIZE", "LAST USED", "IN USE"],
        lambda e: [
            e["node"],
            e["tag"],
            human_size(e["size_bytes"]),
            e["last_used_at"] or "-",
            "yes" if e["in_use"] else "",
        ],
    )


COMMANDS = [env]
