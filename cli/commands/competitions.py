"""`podium competition ...`, `podium submit` and `podium leaderboard`."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click
import yaml

from cli.client import CliError
from cli.context import client, client_or_anonymous
from cli.output import emit_json, listing, table


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.5f}"


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot send {value!r} in a spec")


@click.group()
def competition() -> None:
    """Competitions: create, teams, submissions, final selections, moderation."""


@competition.command("create")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def competition_create(spec: Path) -> None:
    """Create a competition from SPEC.yaml and the files it names (relative to it).
    See docs/competitions.md for the format."""
    try:
        document = yaml.safe_load(spec.read_text())
    except yaml.YAMLError as exc:
        raise CliError(f"{spec} is not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict) or not isinstance(document.get("rounds"), list):
        raise CliError(f"{spec} must be a mapping with a list of rounds")
    names = {
        str(r.get(key))
        for r in document["rounds"]
        if isinstance(r, dict)
        for key in ("test_inputs", "labels", "scorer")
        if r.get(key)
    }
    files = {}
    for name in sorted(names):
        path = (spec.parent / name).resolve()
        if not path.is_file():
            raise CliError(f"{spec} names {name}, which is not a file next to it")
        files[name] = (name, path.read_bytes())
    body = client().post(
        "/competitions",
        data={"spec": json.dumps(document, default=_json_default)},
        files=files,
        timeout=3600,
    )
    click.echo(f"created {body['slug']}: {body['title']} ({len(body['rounds'])} rounds)")


@competition.command("import")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--slug", help="the competition's slug (default: from its title)")
@click.option("--metric", help="rank by this metric, whatever the bundle's scoring")
@click.option("--json", "as_json", is_flag=True)
def competition_import(bundle: Path, slug: str | None, metric: str | None, as_json: bool) -> None:
    """Create a competition from a Codabench or CodaLab bundle (a zip holding
    competition.yaml), as a private draft; print what could not be carried over."""
    params = {k: v for k, v in (("slug", slug), ("metric", metric)) if v}
    with bundle.open("rb") as data:
        body = client().post(
            "/competitions/import",
            params=params,
            files={"bundle": (bundle.name, data)},
            timeout=3600,
        )
    if as_json:
        emit_json(body)
        return
    created = body["competition"]
    click.echo(f"created {created['slug']}: {created['title']} ({len(created['rounds'])} rounds)")
    for line in body["report"]:
        click.echo(f"  {line}")


@competition.command("ls")
@click.option("--json", "as_json", is_flag=True)
def competition_ls(as_json: bool) -> None:
    """Competitions you can see."""
    items = client_or_anonymous().get("/competitions")
    listing(
        items,
        as_json,
        ["SLUG", "TITLE", "ORGANISER", "ROUNDS", "NOW"],
        lambda c: [
            c["slug"],
            c["title"],
            c["organiser"],
            str(len(c["rounds"])),
            next((f"round {r['number']} open" for r in c["rounds"] if r["state"] == "open"), "-"),
        ],
    )


@competition.command("show")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True)
def competition_show(slug: str, as_json: bool) -> None:
    """A competition's rounds, and your team."""
    api = client_or_anonymous()
    body = api.get(f"/competitions/{slug}")
    if as_json:
        emit_json(body)
        return
    click.echo(
        f"{body['title']} ({body['slug']}, {body['visibility']}, organised by "
        f"{body['organiser']}; teams of up to {body['team_size_limit']})"
    )
    table(
        [
            [
                str(r["number"]),
                r["name"],
                r["state"],
                r["starts_at"],
                r["ends_at"],
                f"{r['metric']} ({'max' if r['higher_is_better'] else 'min'})",
                f"{r['daily_quota']}/day {r['total_quota']} total",
            ]
            for r in body["rounds"]
        ],
        ["ROUND", "NAME", "STATE", "OPENS", "CLOSES", "METRIC", "QUOTA"],
    )


@competition.command("data")
@click.argument("slug")
@click.option("--round", "round_number", type=int, help="the round (the open one by default)")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
def competition_data(slug: str, round_number: int | None, output: Path | None) -> None:
    """What a round takes, and its test inputs where it publishes them (into OUTPUT,
    default SLUG-roundN-test.csv): a predictions file answers every row."""
    api = client_or_anonymous()
    body = api.get(f"/competitions/{slug}")
    rounds = body["rounds"]
    if not rounds:
        raise CliError(f"{slug} has no rounds")
    if round_number is None:
        round_ = next((r for r in rounds if r["state"] == "open"), rounds[-1])
    else:
        round_ = next((r for r in rounds if r["number"] == round_number), None)
        if round_ is None:
            raise CliError(f"{slug} has no round {round_number}")
    number = round_["number"]
    takes = {
        "files": "predictions files only",
        "models": "models only: submit a session's checkpoint (podium submit USER/N -C SLUG)",
        "both": "predictions files or models (a session's checkpoint)",
    }[round_["accepts"]]
    click.echo(f"round {number} ({round_['state']}): takes {takes}")
    if round_["dataset"]:
        click.echo(
            f"train on the dataset {round_['dataset']} (podium run ... -d {round_['dataset']})"
        )
    if not round_["publish_inputs"]:
        click.echo("its test inputs are not published")
        return
    target = output or Path(f"{slug}-round{number}-test.csv")
    response = api.call("GET", f"/competitions/{slug}/rounds/{number}/inputs.csv", stream=True)
    with target.open("wb") as out:
        for chunk in response.iter_content(1024 * 1024):
            out.write(chunk)
    click.echo(f"test inputs ({round_['rows']} rows, no labels) → {target}")


@competition.command("team")
@click.argument("slug")
@click.option("--create", "create_name", help="create a team of this name (you join it)")
@click.option("--invite", "invite_user", help="invite this user into your team")
@click.option("--join", "join_team", help="accept the invitation of this team")
@click.option("--code", help="join the team with this invite code")
@click.option("--leave", is_flag=True, help="leave your team")
@click.option("--json", "as_json", is_flag=True)
def competition_team(
    slug: str,
    create_name: str | None,
    invite_user: str | None,
    join_team: str | None,
    code: str | None,
    leave: bool,
    as_json: bool,
) -> None:
    """Show your team in SLUG, or create, invite, join or leave one."""
    api = client()
    base = f"/competitions/{slug}"
    if sum(bool(x) for x in (create_name, invite_user, join_team, code, leave)) > 1:
        raise CliError("give one of --create, --invite, --join, --code, --leave")
    if create_name:
        api.post(f"{base}/teams", json={"name": create_name})
    elif invite_user:
        api.post(f"{base}/team/invites", json={"username": invite_user})
        click.echo(
            f"invited {invite_user}: they accept with `podium competition team {slug} --join TEAM`"
        )
    elif join_team or code:
        api.post(f"{base}/team/join", json={"team": join_team, "code": code})
    elif leave:
        api.post(f"{base}/team/leave")
        click.echo(f"you left your team in {slug}")
        return
    body = api.get(f"{base}/team")
    if as_json:
        emit_json(body)
        return
    mine = body["team"]
    if mine is None:
        click.echo(f"you are in no team of {slug} (a first submission makes you a team of one)")
    else:
        click.echo(f"team {mine['name']}: {', '.join(mine['members'])}")
        click.echo(f"invite code: {mine['invite_code']}")
        if mine["invited"]:
            click.echo(f"invited: {', '.join(mine['invited'])}")
        if mine["disqualified_reason"]:
            click.echo(f"disqualified: {mine['disqualified_reason']}")
    if body["invitations"]:
        click.echo(f"invitations to you: {', '.join(body['invitations'])}")


@competition.command("submissions")
@click.argument("slug")
@click.option("--round", "round_", type=int, help="only this round")
@click.option("--team", help="another team's (organisers)")
@click.option("--json", "as_json", is_flag=True)
def competition_submissions(slug: str, round_: int | None, team: str | None, as_json: bool) -> None:
    """Your team's submissions: status, scores, errors."""
    params = {k: v for k, v in (("round", round_), ("team", team)) if v is not None}
    items = client().get(f"/competitions/{slug}/submissions", params=params)
    listing(
        items,
        as_json,
        ["ID", "ROUND", "BY", "WHAT", "STATUS", "PUBLIC", "PRIVATE", "FINAL", "SUBMITTED", "ERROR"],
        lambda s: [
            str(s["id"]),
            str(s["round"]),
            s["user"],
            s["session"] or "file",
            s["status"],
            _score(s["public_score"]),
            _score(s["private_score"]),
            "yes" if s["selected"] else "",
            s["created_at"],
            s["disqualified_reason"] or s["error"] or "",
        ],
    )


@competition.command("select")
@click.argument("slug")
@click.argument("submission", type=int)
@click.option("--undo", is_flag=True, help="unselect it")
def competition_select(slug: str, submission: int, undo: bool) -> None:
    """Select a submission for the final (private) ranking."""
    body = client().post(
        f"/competitions/{slug}/submissions/{submission}/select", json={"selected": not undo}
    )
    click.echo(f"submission {body['id']} {'selected' if body['selected'] else 'unselected'}")


@competition.command("disqualify")
@click.argument("slug")
@click.option("--submission", type=int, help="this submission")
@click.option("--team", help="this whole team")
@click.option("--reason", required=True, help="what they will read")
def competition_disqualify(
    slug: str, submission: int | None, team: str | None, reason: str
) -> None:
    """Disqualify a submission or a team (organisers)."""
    if (submission is None) == (team is None):
        raise CliError("give --submission ID or --team NAME")
    api = client()
    if submission is not None:
        api.post(
            f"/competitions/{slug}/submissions/{submission}/disqualify", json={"reason": reason}
        )
        click.echo(f"submission {submission} disqualified")
    else:
        api.post(f"/competitions/{slug}/teams/{team}/disqualify", json={"reason": reason})
        click.echo(f"team {team} disqualified")


ACTIVE_REPRODUCTION = ("training", "grading", "scoring")


def _side_by_side(r: dict[str, Any]) -> str:
    """The original and reproduced scores of a reproduction, with the difference."""
    lines = [
        f"reproduction {r['id']} of submission {r['submission']} (team {r['team']}): {r['status']}"
    ]
    if r["training_session"]:
        lines.append(f"  re-run:     {r['training_session']} ({r['training_status']})")
    for board in ("public", "private"):
        key = f"{board}_score"
        difference = r["difference"][key]
        lines.append(
            f"  {board + ':':<11} original {_score(r['original'][key])}   "
            f"reproduced {_score(r['reproduced'][key])}   difference "
            + ("—" if difference is None else f"{difference:+.5f}")
        )
    if r["same_checkpoint"]:
        lines.append("  the re-run saved the very checkpoint the submission graded")
    if r["stale"]:
        lines.append("  scored against labels or a metric the round has since replaced")
    if r["error"]:
        lines.append(f"  error: {r['error']}")
    if r.get("log_tail"):
        lines.append("  the re-run's last lines:")
        lines.extend(f"    {line}" for line in r["log_tail"][-10:])
    return "\n".join(lines)


@competition.command("reproduce")
@click.argument("slug")
@click.option("--submission", type=int, help="re-run this model submission's training")
@click.option("--stop", "stop_id", type=int, help="stop this reproduction")
@click.option("--wait", is_flag=True, help="wait until it is scored or has failed")
@click.option("--json", "as_json", is_flag=True)
def competition_reproduce(
    slug: str, submission: int | None, stop_id: int | None, wait: bool, as_json: bool
) -> None:
    """Re-run a model submission's training from its record and grade the re-run against
    the same round: the original and reproduced scores side by side (organisers)."""
    if (submission is None) == (stop_id is None):
        raise CliError("give --submission ID (to reproduce) or --stop REPRODUCTION")
    api = client()
    if stop_id is not None:
        body = api.post(f"/competitions/{slug}/reproductions/{stop_id}/stop")
    else:
        body = api.post(f"/competitions/{slug}/submissions/{submission}/reproductions")
        if not as_json:
            click.echo(
                f"reproduction {body['id']}: {body['training_session']} runs the training of "
                f"submission {body['submission']} again",
                err=wait,
            )
    seen = body["status"]
    while wait and body["status"] in ACTIVE_REPRODUCTION:
        time.sleep(1)
        body = api.get(f"/competitions/{slug}/reproductions/{body['id']}")
        if body["status"] != seen and not as_json:
            click.echo(f"reproduction {body['id']}: {body['status']}", err=True)
        seen = body["status"]
    if as_json:
        emit_json(body)
    elif wait or stop_id is not None:
        click.echo(_side_by_side(body))
    if body["status"] == "failed" and wait:
        sys.exit(1)


@competition.command("reproductions")
@click.argument("slug")
@click.option("--submission", type=int, help="only this submission's")
@click.option("--json", "as_json", is_flag=True)
def competition_reproductions(slug: str, submission: int | None, as_json: bool) -> None:
    """The competition's reproductions, original and reproduced scores side by side
    (organisers)."""
    params = {"submission": submission} if submission is not None else {}
    items = client().get(f"/competitions/{slug}/reproductions", params=params)
    listing(
        items,
        as_json,
        [
            "ID",
            "SUBMISSION",
            "TEAM",
            "STATUS",
            "ORIGINAL",
            "REPRODUCED",
            "DIFFERENCE",
            "RE-RUN",
            "ERROR",
        ],
        lambda r: [
            str(r["id"]),
            str(r["submission"]),
            r["team"],
            r["status"],
            _score(r["original"]["public_score"]),
            _score(r["reproduced"]["public_score"]),
            "—"
            if r["difference"]["public_score"] is None
            else f"{r['difference']['public_score']:+.5f}",
            r["training_session"] or "",
            r["error"] or "",
        ],
    )


@competition.command("open")
@click.argument("slug")
@click.option(
    "--visibility",
    type=click.Choice(["public", "unlisted", "private"]),
    default="public",
    show_default=True,
)
def competition_open(slug: str, visibility: str) -> None:
    """Set who sees a competition (organisers): a `private` one is a draft."""
    body = client().call("PATCH", f"/competitions/{slug}", json={"visibility": visibility}).json()
    click.echo(f"{slug} is {body['visibility']}")


@competition.command("edit")
@click.argument("slug")
@click.option("--round", "round_", type=int, required=True)
@click.option(
    "--set",
    "settings",
    multiple=True,
    required=True,
    metavar="KEY=VALUE",
    help="a round field as in the spec, e.g. --set ends_at=2026-12-20T00:00:00Z",
)
def competition_edit(slug: str, round_: int, settings: tuple[str, ...]) -> None:
    """Change a round (organisers): anything before it starts; its metric after."""
    changes: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise CliError(f"--set takes KEY=VALUE, not {setting!r}")
        changes[key.strip()] = value if key.strip().endswith("_at") else yaml.safe_load(value)
    response = client().call("PATCH", f"/competitions/{slug}/rounds/{round_}", json=changes)
    body = response.json()
    click.echo(
        f"round {body['number']} of {slug}: "
        + ", ".join(f"{key}={body[key]}" for key in changes if key in body)
    )


@competition.command("rescore")
@click.argument("slug")
@click.option("--round", "round_", type=int, required=True)
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="replace the hidden labels first (id,label)",
)
def competition_rescore(slug: str, round_: int, labels: Path | None) -> None:
    """Score every submission of a round again (organisers)."""
    api = client()
    if labels is not None:
        response = api.call(
            "PUT",
            f"/competitions/{slug}/rounds/{round_}/labels",
            data=labels.read_bytes(),
            headers={"Content-Type": "text/csv"},
        )
        body = api._json(response)
    else:
        body = api.post(f"/competitions/{slug}/rounds/{round_}/rescore")
    click.echo(f"{body['queued']} submissions queued for scoring")


@competition.command("export")
@click.argument("slug")
@click.option("--round", "round_", type=int, required=True)
def competition_export(slug: str, round_: int) -> None:
    """The final ranking of a round as CSV on stdout (organisers)."""
    response = client().call("GET", f"/competitions/{slug}/rounds/{round_}/ranking.csv")
    sys.stdout.write(response.text)


@click.command()
@click.argument("source", required=False)
@click.option("-C", "--competition", "slug", required=True, help="the competition's slug")
@click.option(
    "--file",
    "file_",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="submit this predictions CSV (id,prediction) instead of a session",
)
@click.option("--round", "round_", type=int, help="the round (default: the open one)")
@click.option("--memo", default="", help="a note kept with the submission")
@click.option("--json", "as_json", is_flag=True)
def submit(
    source: str | None,
    slug: str,
    file_: Path | None,
    round_: int | None,
    memo: str,
    as_json: bool,
) -> None:
    """Submit USER/N[:CHECKPOINT] (graded in a sandbox), or a predictions file."""
    if (source is None) == (file_ is None):
        raise CliError("submit a session (USER/N[:CHECKPOINT]) or a file with --file, not both")
    api = client()
    if file_ is not None:
        params: dict[str, Any] = {"memo": memo}
        if round_ is not None:
            params["round"] = round_
        body = api._json(
            api.call(
                "POST",
                f"/competitions/{slug}/submissions",
                data=file_.read_bytes(),
                params=params,
                headers={"Content-Type": "text/csv"},
                timeout=600,
            )
        )
    else:
        assert source is not None
        body = api.post(
            f"/competitions/{slug}/submissions/session",
            json={"session": source, "round": round_, "memo": memo},
        )
    if as_json:
        emit_json(body)
    else:
        click.echo(f"submission {body['id']} to {slug} round {body['round']}: {body['status']}")


@click.command()
@click.argument("slug")
@click.option("--round", "round_", type=int, help="the round (default: the open one)")
@click.option("--private", is_flag=True, help="the final board (once the round has ended)")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
def leaderboard(slug: str, round_: int | None, private: bool, limit: int, as_json: bool) -> None:
    """A round's leaderboard (no account needed for public competitions)."""
    path = (
        f"/competitions/{slug}/rounds/{round_}/leaderboard"
        if round_
        else (f"/competitions/{slug}/leaderboard")
    )
    body = client_or_anonymous().get(
        path, params={"board": "private" if private else "public", "limit": limit}
    )
    if as_json:
        emit_json(body)
        return
    click.echo(
        f"{slug} round {body['round']} ({body['state']}), {body['board']} "
        f"{body['metric']}: {body['total']} teams"
    )
    table(
        [
            [
                str(r["rank"]),
                r["team"],
                _score(r["score"]),
                str(r["submissions"]),
                r.get("last_submission_at") or r.get("best_at") or "",
            ]
            for r in body["rows"]
        ],
        ["RANK", "TEAM", "SCORE", "ENTRIES", "LAST"],
    )


COMMANDS = [competition, submit, leaderboard]
