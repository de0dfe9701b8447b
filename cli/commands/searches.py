"""`podium automl SPEC.yaml`, and `podium automl ls|show|stop`: hyperparameter searches,
their trials ordinary sessions of yours."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml

from cli.client import ApiClient, CliError
from cli.commands import StartGroup
from cli.commands.sessions import parse_memory, upload_code
from cli.context import client
from cli.output import emit_json, listing, table

# A spec's fields that say what each trial's session is; the rest is the search's.
SESSION_FIELDS = {
    "script",
    "code",
    "gpus",
    "gpu_memory",
    "cpus",
    "memory",
    "image",
    "gpu_models",
    "datasets",
    "memo",
}
ENDED = {"done", "stopped", "failed"}


def search_path(ident: str) -> str:
    """`USER/search/N`, or `N` for one's own, as an API path."""
    parts = ident.strip().split("/")
    if len(parts) == 3 and parts[1] == "search" and parts[2].isdigit():
        return f"/searches/{parts[0]}/{parts[2]}"
    if len(parts) == 1 and parts[0].isdigit():
        from cli import config

        credentials = config.load()
        return f"/searches/{credentials.username if credentials else ''}/{parts[0]}"
    raise CliError(f"no search {ident!r}: a search id reads USER/search/N")


@click.group(cls=StartGroup)
def automl() -> None:
    """Hyperparameter searches: `podium automl SPEC.yaml` starts one (grid, random, tpe,
    asha or pbt); its trials are sessions of yours."""


def read_spec(path: Path) -> dict[str, Any]:
    try:
        body = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        problem = str(exc).replace("\n", " ")
        raise CliError(f"cannot read {path} as YAML: {problem}") from None
    if not isinstance(body, dict):
        raise CliError(f"{path}: a search spec is a mapping (script, metric, search, budget ...)")
    return body


@automl.command("start")
@click.argument("spec_file", metavar="SPEC.yaml", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--code",
    "code_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="the folder to upload [default: the script's folder]",
)
@click.option("--detach", is_flag=True, help="print the search's id and return")
def start(spec_file: Path, code_dir: Path | None, detach: bool) -> None:
    """Start the search SPEC.yaml describes; follow its trials until it ends."""
    if not spec_file.is_file():
        raise CliError(f"no such file: {spec_file}")
    body = read_spec(spec_file)
    script = body.get("script")
    if not isinstance(script, str) or not script:
        raise CliError(f"{spec_file}: give the script to run (script: train.py)")
    entry = (spec_file.parent / script).resolve()
    if not entry.is_file():
        raise CliError(f"{spec_file}: no such script: {entry}")
    given_code = body.get("code")
    folder = code_dir or (spec_file.parent / given_code if isinstance(given_code, str) else None)
    folder = (folder or entry.parent).resolve()
    try:
        relative_entry = entry.relative_to(folder).as_posix()
    except ValueError:
        raise CliError(f"{entry} is not inside the code folder {folder}") from None
    gpus = body.get("gpus", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, int | float) or gpus < 0:
        raise CliError(f"{spec_file}: gpus is a number of GPUs (or a share of one, 0.25)")
    listed = {}
    for name in ("gpu_models", "datasets"):
        value = body.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise CliError(f"{spec_file}: {name} is a list of names")
        listed[name] = value
    api = client()
    limits = api.get("/auth/me")["limits"]
    digest, _ = upload_code(api, folder, relative_entry, limits["max_code_bytes"])
    memory, gpu_memory = body.get("memory"), body.get("gpu_memory")
    search = api.post(
        "/searches",
        json={
            "entry": relative_entry,
            "code_digest": digest,
            "gpus": int(gpus) if gpus == int(gpus) else gpus,
            "gpu_memory_mb": parse_memory(str(gpu_memory)) if gpu_memory else 0,
            "cpus": body.get("cpus"),
            "memory_mb": parse_memory(str(memory)) if memory else None,
            "image": body.get("image", ""),
            "memo": body.get("memo", ""),
            **listed,
            "spec": {k: v for k, v in body.items() if k not in SESSION_FIELDS},
        },
    )
    click.echo(search["id"])
    if detach:
        return
    sys.exit(follow(api, search["id"]))


def follow(api: ApiClient, ident: str, poll_seconds: float = 2.0) -> int:
    """Print each trial as it starts and ends until the search ends; 0 when it is done."""
    told: dict[int, str] = {}
    while True:
        search = api.get(search_path(ident))
        for trial in search["trials"]:
            state = trial["state"]
            if told.get(trial["number"]) == state:
                continue
            told[trial["number"]] = state
            click.echo(trial_line(search, trial))
        if search["status"] in ENDED:
            best = search["best"]
            click.echo(
                f"{search['id']} {search['status']}: {search['status_reason']}"
                + (
                    f"; best: trial {best['trial']}, {search['metric']} {best['value']:.4g}"
                    if best
                    else ""
                )
            )
            return 0 if search["status"] == "done" else 1
        time.sleep(poll_seconds)


def trial_line(search: dict[str, Any], trial: dict[str, Any]) -> str:
    params = " ".join(f"{k}={_short(v)}" for k, v in trial["params"].items())
    value = "" if trial["value"] is None else f" {search['metric']}={trial['value']:.4g}"
    note = f" ({trial['note']})" if trial["note"] else ""
    return f"trial {trial['number']} [{trial['session']}] {trial['state']}: {params}{value}{note}"


def _short(value: Any) -> str:
    return format(value, ".4g") if isinstance(value, float) else str(value)


@automl.command("ls")
@click.option("--all", "everyone", is_flag=True, help="everyone's (administrators)")
@click.option("--json", "as_json", is_flag=True)
def ls(everyone: bool, as_json: bool) -> None:
    """Your searches, newest first."""
    found = client().get("/searches", params={"all": "true"} if everyone else None)
    listing(
        found,
        as_json,
        ["ID", "ALGORITHM", "STATUS", "TRIALS", "BEST", "METRIC"],
        lambda s: [
            s["id"],
            s["algorithm"],
            s["status"],
            str(sum(s["trial_counts"].values())),
            f"{s['best']['value']:.4g}" if s["best"] else "-",
            f"{s['metric']} ({s['direction']})",
        ],
    )


@automl.command("show")
@click.argument("search")
@click.option("--json", "as_json", is_flag=True)
def show(search: str, as_json: bool) -> None:
    """A search, its best so far and its trials."""
    found = client().get(search_path(search))
    if as_json:
        emit_json(found)
        return
    best = found["best"]
    click.echo(f"{found['id']}  {found['algorithm']}  {found['status']}: {found['status_reason']}")
    click.echo(
        f"metric: {found['metric']} ({found['direction']}); "
        + (f"best: trial {best['trial']}, {best['value']:.4g}" if best else "best: none yet")
        + f"; {found['gpu_hours_used']:.3g} GPU-hours"
    )
    names = list(found["spec"]["space"])
    table(
        [
            [
                str(t["number"]),
                t["session"] or "-",
                t["state"],
                *(_short(t["params"].get(n, "")) for n in names),
                "-" if t["value"] is None else f"{t['value']:.4g}",
                "-" if t["parent"] is None else str(t["parent"]),
            ]
            for t in found["trials"]
        ],
        ["TRIAL", "SESSION", "STATE", *(n.upper() for n in names), "VALUE", "FROM"],
    )


@automl.command("stop")
@click.argument("search")
def stop(search: str) -> None:
    """Stop a search and its sessions that have not ended."""
    found = client().post(search_path(search) + "/stop")
    click.echo(f"{found['id']} stopped")


COMMANDS = [automl]
