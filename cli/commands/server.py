"""`podium up` and `podium image`: a server install on this machine, handed over to the
server-side programs."""

from __future__ import annotations

import os
import sys

import click

# Commands that hand over to a server-side program, with all their options: the server
# lives in other packages, run as programs of their own so that this client imports none.
HANDED_OVER = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def hand_over(module: str, args: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", module, *args])


@click.command(context_settings=HANDED_OVER)
@click.pass_context
def up(ctx: click.Context) -> None:
    """Run the whole platform on this machine (server install). See `podium up --help`."""
    hand_over("portal.stack", ctx.args)


@click.command(context_settings=HANDED_OVER)
@click.pass_context
def image(ctx: click.Context) -> None:
    """Build the Docker runtime's images on this machine (`podium image build`)."""
    hand_over("nodes.images", ctx.args)


COMMANDS = [up, image]
