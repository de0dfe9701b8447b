"""`podium notifications`: what the platform told you, and e-mail alerts on or off."""

from __future__ import annotations

import click

from cli.context import client
from cli.output import emit_json, table


@click.command()
@click.option("--unread", is_flag=True, help="only the unread")
@click.option("--read", "mark", is_flag=True, help="mark them all read")
@click.option("--email", type=click.Choice(["on", "off"]), help="e-mail alerts on or off")
@click.option("--json", "as_json", is_flag=True)
def notifications(unread: bool, mark: bool, email: str | None, as_json: bool) -> None:
    """Your notifications, newest first: sessions that failed, were lost or stalled,
    credit that ran out."""
    api = client()
    if email is not None:
        body = api.call("PUT", "/notifications/email", json={"enabled": email == "on"}).json()
        if not as_json:
            state = "on" if body["email_alerts"] else "off"
            click.echo(f"e-mail alerts are {state}")
            if not body["email_enabled"]:
                click.echo("(this site sends no e-mail: it has no mail server set)")
            return
    elif mark:
        body = api.post("/notifications/read", json={})
        if not as_json:
            click.echo(f"{body['accepted']} marked read")
            return
    else:
        body = api.get("/notifications", params={"unread": str(unread).lower()})
    if as_json:
        emit_json(body)
        return
    click.echo(f"{body['unread']} unread")
    table(
        [
            [
                "" if n["read"] else "•",
                (n["created_at"] or "")[:19].replace("T", " "),
                n["subject"],
            ]
            for n in body["notifications"]
        ],
        ["", "WHEN", "SUBJECT"],
    )


COMMANDS = [notifications]
