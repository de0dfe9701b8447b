"""`podium login`, `podium logout` and `podium whoami`: the stored token."""

from __future__ import annotations

import sys

import click

from cli import config
from cli.client import ApiClient
from cli.context import client
from cli.output import emit_json


@click.command()
@click.option("--url", help="the portal's URL (default: the last one used)")
@click.option("-u", "--username", help="your username")
@click.option("--password-stdin", is_flag=True, help="read the password from stdin")
def login(url: str | None, username: str | None, password_stdin: bool) -> None:
    """Log in and keep the token in $PODIUM_HOME."""
    previous = config.load()
    url = url or (previous.url if previous else None) or "http://127.0.0.1:5000"
    username = username or click.prompt("Username")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True)
    body = ApiClient(url).post(
        "/auth/tokens", json={"username": username, "password": password, "label": "cli"}
    )
    path = config.save(config.Credentials(url=url, token=body["token"], username=username))
    click.echo(f"logged in to {url} as {username} (token in {path})")


@click.command()
def logout() -> None:
    """Revoke the token and forget it."""
    credentials = config.load()
    if credentials is None:
        click.echo("not logged in")
        return
    try:
        ApiClient(credentials.url, credentials.token).call(
            "DELETE", "/auth/tokens/current", ok=(401,)
        )
    finally:
        config.forget()
    click.echo(f"logged out of {credentials.url}")


@click.command()
@click.option("--json", "as_json", is_flag=True)
def whoami(as_json: bool) -> None:
    """Who the stored token belongs to."""
    api = client()
    user = api.get("/auth/me")
    if as_json:
        emit_json({**user, "url": api.url})
    else:
        role = " (admin)" if user["is_admin"] else ""
        click.echo(f"{user['username']}{role} at {api.url}")


COMMANDS = [login, logout, whoami]
