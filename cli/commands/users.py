"""`podium user ...`: accounts, their levels and approval, and sign-up invitations
(administrators)."""

from __future__ import annotations

import click

from cli.context import client
from cli.output import emit_json, listing

LEVELS = ("user", "organiser", "trusted", "admin")


@click.group()
def user() -> None:
    """Accounts (administrators): levels, approval, invitations."""


@user.command("ls")
@click.option("--json", "as_json", is_flag=True)
def user_ls(as_json: bool) -> None:
    """Every account with its level and whether it may log in."""
    listing(
        client().get("/users"),
        as_json,
        ["USER", "LEVEL", "STATE", "CREDIT (GPU-H)", "E-MAIL"],
        lambda u: [
            u["username"],
            u["level"],
            "active" if u["active"] else "waiting for approval",
            f"{u['credit']:.1f}",
            u["email"] or "-",
        ],
    )


def _change(username: str, **change) -> dict:
    return client().call("PATCH", f"/users/{username}", json=change).json()


@user.command("set-level")
@click.argument("username")
@click.argument("level", type=click.Choice(LEVELS))
def user_set_level(username: str, level: str) -> None:
    """Set USERNAME's level: user (code only in containers), organiser (also creates
    competitions), trusted (also the local runtime), admin."""
    body = _change(username, level=level)
    click.echo(f"{body['username']} is {body['level']}")


@user.command("approve")
@click.argument("username")
def user_approve(username: str) -> None:
    """Let an account that signed up log in (where sign-up needs approval)."""
    body = _change(username, active=True)
    click.echo(f"{body['username']} may log in")


@user.command("suspend")
@click.argument("username")
def user_suspend(username: str) -> None:
    """Stop an account from logging in; its tokens stop working at once."""
    body = _change(username, active=False)
    click.echo(f"{body['username']} is suspended")


@user.command("invite")
@click.option("--uses", type=int, default=1, show_default=True, help="sign-ups it allows")
@click.option("--days", type=int, default=7, show_default=True, help="days it stays valid")
@click.option("--json", "as_json", is_flag=True)
def user_invite(uses: int, days: int, as_json: bool) -> None:
    """A sign-up invitation code, where sign-up needs one (shown once)."""
    body = client().post("/users/invitations", json={"uses": uses, "days": days})
    if as_json:
        emit_json(body)
    else:
        click.echo(body["code"])


COMMANDS = [user]
