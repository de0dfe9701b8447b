"""`podium credit`: a balance and its ledger; administrators grant and refund."""

from __future__ import annotations

import click

from cli import config
from cli.client import CliError
from cli.context import client
from cli.output import emit_json, table


def _ledger_rows(entries: list[dict]) -> list[list[str]]:
    return [
        [
            (e["created_at"] or "")[:19].replace("T", " "),
            e["kind"],
            f"{e['amount']:+.4f}",
            f"{e['balance_after']:.4f}",
            f"{e['gpu_hours']:.3f}" if e["kind"] == "charge" else "",
            e["session"] or "",
            e["reason"] + (f" (by {e['by']})" if e["by"] else ""),
        ]
        for e in entries
    ]


@click.command()
@click.argument("username", required=False)
@click.option("--ledger", is_flag=True, help="every grant, charge and refund, newest first")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--grant", type=float, help="credits to grant (administrators)")
@click.option("--refund", type=float, help="credits to give back (administrators)")
@click.option("--session", help="the session a refund is for")
@click.option("--reason", default="", help="why, for the ledger")
@click.option("--json", "as_json", is_flag=True)
def credit(
    username: str | None,
    ledger: bool,
    limit: int,
    grant: float | None,
    refund: float | None,
    session: str | None,
    reason: str,
    as_json: bool,
) -> None:
    """Credit left (yours, or USER's): 1 credit buys a GPU-hour at the default rates."""
    if grant is not None and refund is not None:
        raise CliError("give either --grant or --refund")
    if session and refund is None:
        raise CliError("--session goes with --refund")
    credentials = config.load()
    username = username or (credentials.username if credentials else "")
    api = client()
    if grant is not None or refund is not None:
        kind, amount = ("grants", grant) if grant is not None else ("refunds", refund)
        payload: dict = {"amount": amount, "reason": reason}
        if session:
            payload["session"] = session
        entry = api.post(f"/users/{username}/credit/{kind}", json=payload)
        if as_json:
            emit_json(entry)
        else:
            balance = entry["balance_after"]
            click.echo(
                f"{username}: {entry['kind']} of {entry['amount']:.2f}; balance {balance:.2f}"
            )
        return
    if ledger:
        entries = api.get(f"/users/{username}/credit/ledger", params={"limit": limit})
        if as_json:
            emit_json(entries)
        else:
            table(
                _ledger_rows(entries),
                ["WHEN", "KIND", "AMOUNT", "BALANCE", "GPU-H", "SESSION", "REASON"],
            )
        return
    body = api.get(f"/users/{username}/credit")
    if as_json:
        emit_json(body)
        return
    rates = body["rates"]
    click.echo(f"{body['username']}: {body['credit']:.2f} credits")
    click.echo(f"rates: {rates['gpu_hour']:g} a GPU-hour, {rates['cpu_hour']:g} a CPU-hour")
    if body["running"]:
        click.echo(f"{body['running']} running, costing {body['burn_per_hour']:.2f} an hour")
    for stop in body["stopping_for_credit"]:
        click.echo(f"out of credit: {stop['session']} stops at {stop['stops_at']}")
    if body["credit"] <= 0:
        click.echo("nothing that costs credit starts until an administrator grants more")


COMMANDS = [credit]
