"""`podium team ...`: collaboration teams, joined by accepting an invitation."""

from __future__ import annotations

import click

from cli import config
from cli.context import client
from cli.output import listing


@click.group()
def team() -> None:
    """Teams that share sessions and datasets: members are invited and accept."""


@team.command("create")
@click.argument("name")
def team_create(name: str) -> None:
    """Create a team; you are its first member."""
    body = client().post("/teams", json={"name": name})
    click.echo(f"team {body['name']}: {', '.join(body['members'])}")


def _invite(name: str, username: str) -> None:
    body = client().post(f"/teams/{name}/members", json={"username": username})
    click.echo(
        f"invited {body['user']} to {body['team']}: they join when they run "
        f"`podium team accept {body['team']}`"
    )


@team.command("invite")
@click.argument("name")
@click.argument("username")
def team_invite(name: str, username: str) -> None:
    """Invite USERNAME into team NAME; they join only if they accept."""
    _invite(name, username)


@team.command("add", hidden=True)
@click.argument("name")
@click.argument("username")
def team_add(name: str, username: str) -> None:
    """The old name of `team invite`."""
    # Kept so that scripts written for the old command still run, and learn what it does.
    click.echo("`podium team add` sends an invitation (the same as `podium team invite`)")
    _invite(name, username)


@team.command("invitations")
@click.option("--json", "as_json", is_flag=True)
def team_invitations(as_json: bool) -> None:
    """Invitations waiting for your answer: who invites you, and who is in the team."""
    listing(
        client().get("/teams/invitations"),
        as_json,
        ["TEAM", "INVITED BY", "MEMBERS"],
        lambda i: [i["team"], i["invited_by"], ", ".join(i["members"])],
    )


@team.command("accept")
@click.argument("name")
def team_accept(name: str) -> None:
    """Join team NAME: its members will see your sessions, and you theirs."""
    body = client().post(f"/teams/{name}/accept")
    click.echo(f"joined {body['name']}: {', '.join(body['members'])}")


@team.command("decline")
@click.argument("name")
def team_decline(name: str) -> None:
    """Decline the invitation to team NAME."""
    client().post(f"/teams/{name}/decline")
    click.echo(f"declined the invitation to {name}")


@team.command("leave")
@click.argument("name")
def team_leave(name: str) -> None:
    """Leave team NAME: its members lose sight of your work at once."""
    credentials = config.load()
    client().call("DELETE", f"/teams/{name}/members/{credentials.username if credentials else ''}")
    click.echo(f"left {name}")


@team.command("ls")
@click.option("--json", "as_json", is_flag=True)
def team_ls(as_json: bool) -> None:
    """Your teams and their members."""
    listing(
        client().get("/teams"),
        as_json,
        ["TEAM", "MEMBERS"],
        lambda t: [t["name"], ", ".join(t["members"])],
    )


COMMANDS = [team]
