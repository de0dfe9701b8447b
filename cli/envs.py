"""`podium env ...`: the environment images sessions run in, on each node."""

from __future__ import annotations

import click

from cli.main import cli, client, listing


def _size(size_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size_bytes < 1024 or unit == "GiB":
            return f"{size_bytes:.0f} {unit}" if unit == "B" else f"{size_bytes:.1f} {unit}"
        size_bytes /= 1024  # type: ignore[assignment]
    return str(size_bytes)


@cli.group("env")
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
            _size(e["size_bytes"]),
            e["last_used_at"] or "-",
            "yes" if e["in_use"] else "",
        ],
    )
