"""`podium`: the one client command, over the portal's REST API. The root group and the
entry point; the commands live in `cli.commands`, one module per noun."""

from __future__ import annotations

import tarfile
from typing import Any

import click

from cli.client import CliError
from cli.commands import (
    auth,
    compare,
    competitions,
    credits,
    datasets,
    envs,
    models,
    monitoring,
    nodes,
    notifications,
    searches,
    server,
    serving,
    sessions,
    teams,
    users,
)


class PodiumGroup(click.Group):
    """Every failure is one line on stderr, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            click.echo(f"podium: error: {exc}", err=True)
            ctx.exit(1)
        except tarfile.TarError as exc:  # a download that is no archive, or past the limits
            click.echo(f"podium: error: the archive was refused: {exc}", err=True)
            ctx.exit(1)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"podium: error: {exc.strerror or exc}{where}", err=True)
            ctx.exit(1)


@click.group(cls=PodiumGroup)
@click.version_option(package_name="podium")
def cli() -> None:
    """Podium: training sessions on a shared GPU cluster, and competitions."""


for module in (
    auth,
    sessions,
    searches,
    serving,
    models,
    compare,
    datasets,
    teams,
    competitions,
    nodes,
    monitoring,
    credits,
    notifications,
    users,
    envs,
    server,
):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    cli(prog_name="podium")
