"""Sessions: `podium run`, `fork`, `resume`, `ps`, `logs`, `stop`, `rm`, `events`,
`eventlen`, `memo`, `command`, `exec` and `sh`, with what they share: session ids, code
upload, and following a log."""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from cli import config
from cli.client import ApiClient, CliError
from cli.context import client
from cli.output import emit_json, listing

FINAL = {"completed", "failed", "killed", "stopped", "rejected", "lost"}


def session_path(ident: str) -> str:
    """`USER/N` or `N` (one's own) as an API path."""
    username, _, number = ident.strip().rpartition("/")
    if not number.isdigit():
        raise CliError(f"no session {ident!r}: a session id reads USER/N")
    if not username:
        credentials = config.load()
        username = credentials.username if credentials else ""
    return f"/sessions/{username}/{number}"


def parse_memory(text: str) -> int:
    """`4G`, `512M` or a number of MiB."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"G": 1024, "M": 1, "T": 1024 * 1024}
    try:
        if value and value[-1] in scale:
            return int(float(value[:-1]) * scale[value[-1]])
        return int(value)
    except ValueError:
        raise CliError(f"cannot read the memory size {text!r}: use e.g. 4G or 512M") from None


def upload_code(api: ApiClient, code_dir: Path, entry: str, limit: int) -> tuple[str, int]:
    from tqdm import tqdm

    from cli.pack import pack

    with tempfile.TemporaryFile() as archive:
        pack(code_dir, archive, max_bytes=limit, required=entry)
        size = archive.tell()
        archive.seek(0)
        digest = hashlib.file_digest(archive, "sha256").hexdigest()
        if api.call("HEAD", f"/code/{digest}", ok=(404,)).status_code == 200:
            return digest, size
        archive.seek(0)
        with tqdm.wrapattr(
            archive,
            "read",
            total=size,
            desc="uploading code",
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            leave=False,
            disable=size < 1024 * 1024 or None,
        ) as reader:
            body = api.call(
                "PUT",
                "/code",
                data=reader,
                headers={"Content-Type": "application/gzip", "Content-Length": str(size)},
            ).json()
    return body["digest"], size


@click.command(context_settings={"show_default": True})
@click.argument("entry", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-a", "--args", "args", default="", help='arguments for the script: -a "--lr 0.1"')
@click.option(
    "-d",
    "--dataset",
    "datasets",
    multiple=True,
    help="NAME[:VERSION] to mount read-only at DATASET_PATH/NAME (repeatable)",
)
@click.option(
    "-g",
    "--gpus",
    default=0,
    type=click.FloatRange(min=0),
    help="whole GPUs, or a share of one GPU (0.25: a quarter of its memory, beside others)",
)
@click.option(
    "--gpu-memory",
    help="a share of one GPU: this much of its memory, e.g. 10G (instead of -g)",
)
@click.option("-c", "--cpus", type=click.FloatRange(min=0.1), help="CPU cores [default: 1]")
@click.option("-m", "--memory", help="memory limit, e.g. 4G [default: 2G]")
@click.option(
    "--image",
    default="",
    help="container image (Docker runtime); on a Podium base image (podium/base, "
    "podium/scientific) the code folder's requirements.txt and apt.txt are built on top",
)
@click.option(
    "--gpu-model",
    "gpu_models",
    multiple=True,
    help="a GPU model it may run on (repeat for several); default: any",
)
@click.option(
    "--code",
    "code_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="the folder to upload [default: the entry file's folder]",
)
@click.option("--memo", default="", help="a note kept with the session")
@click.option(
    "--stall-minutes",
    type=click.IntRange(min=1, max=7 * 24 * 60),
    help="tell me when it prints and reports nothing for this long",
)
@click.option("--detach", is_flag=True, help="print the session id and return")
def run(
    entry: Path,
    args: str,
    datasets: tuple[str, ...],
    gpus: float,
    gpu_memory: str | None,
    cpus: float | None,
    memory: str | None,
    image: str,
    gpu_models: tuple[str, ...],
    code_dir: Path | None,
    memo: str,
    stall_minutes: int | None,
    detach: bool,
) -> None:
    """Upload ENTRY's folder and run ENTRY there as a session."""
    if not entry.is_file():
        raise CliError(f"no such file: {entry}")
    code_dir = (code_dir or entry.parent).resolve()
    try:
        relative_entry = entry.resolve().relative_to(code_dir).as_posix()
    except ValueError:
        raise CliError(f"{entry} is not inside the code folder {code_dir}") from None
    memory_mb = parse_memory(memory) if memory else None
    gpu_memory_mb = parse_memory(gpu_memory) if gpu_memory else 0
    api = client()
    limits = api.get("/auth/me")["limits"]
    digest, _ = upload_code(api, code_dir, relative_entry, limits["max_code_bytes"])
    session = api.post(
        "/sessions",
        json={
            "entry": relative_entry,
            "code_digest": digest,
            "args": args,
            "gpus": int(gpus) if gpus == int(gpus) else gpus,
            "gpu_memory_mb": gpu_memory_mb,
            "cpus": cpus,
            "memory_mb": memory_mb,
            "image": image,
            "gpu_models": list(gpu_models),
            "datasets": list(datasets),
            "memo": memo,
            "stall_minutes": stall_minutes,
        },
    )
    click.echo(session["id"])
    if detach:
        return
    sys.exit(follow(api, session["id"]))


@click.command()
@click.argument("session")
@click.option("-a", "--args", "args", default=None, help="new arguments (default: the same)")
@click.option("--checkpoint", help="start from this checkpoint of SESSION (sdk.RESUME names it)")
@click.option("--detach", is_flag=True, help="print the new session's id and return")
def fork(session: str, args: str | None, checkpoint: str | None, detach: bool) -> None:
    """Run SESSION's code again (yours or a teammate's) as a new session of yours."""
    api = client()
    body = api.post(session_path(session) + "/fork", json={"args": args, "checkpoint": checkpoint})
    click.echo(body["id"])
    if not detach:
        sys.exit(follow(api, body["id"]))


def follow(api: ApiClient, ident: str, *, after: int = -1, poll_seconds: float = 0.2) -> int:
    """Print the log as it grows until the session ends; return the exit code to use."""
    path = session_path(ident)
    waiting = ""
    try:
        while True:
            body = api.get(f"{path}/logs", params={"after": after})
            for line in body["lines"]:
                click.echo(line["text"])
                after = line["seq"]
            session = body["session"]
            if session["status"] == "pending" and session["status_reason"] != waiting:
                waiting = session["status_reason"]  # why it waits, once each time it changes
                click.echo(f"{ident} is pending: {waiting}", err=True)
            if session.get("stalled_since") and waiting != "stalled":
                waiting = "stalled"
                click.echo(f"{ident} has stalled: nothing printed or reported", err=True)
            if session["status"] in FINAL and not body["lines"]:
                return report_end(session)
            if not body["lines"]:
                time.sleep(poll_seconds)
    except KeyboardInterrupt:
        click.echo(f"\nstopped following; {ident} goes on (podium logs {ident} -f)", err=True)
        return 130


def report_end(session: dict[str, Any]) -> int:
    reason = f": {session['status_reason']}" if session["status_reason"] else ""
    click.echo(f"{session['id']} {session['status']}{reason}", err=True)
    if session["status"] == "completed":
        return 0
    code = session.get("exit_code")
    return code if isinstance(code, int) and 0 < code < 256 else 1


def gpus_column(session: dict[str, Any]) -> str:
    """The GPUs it holds (2,3; a share: 0 (0.25)), or what it asks for."""
    held = ",".join(map(str, session["gpu_indices"]))
    share = session.get("gpu_share")
    if held:
        return f"{held} ({share:g})" if share else held
    if share or session.get("gpu_memory_mb"):
        wanted = f"{share:g}" if share else f"{session['gpu_memory_mb']} MiB of"
        return f"{wanted} GPU wanted"
    return f"{session['gpus']} wanted" if session["gpus"] else "-"


@click.command()
@click.option("--all", "everyone", is_flag=True, help="everyone's sessions (administrators)")
@click.option("--json", "as_json", is_flag=True)
def ps(everyone: bool, as_json: bool) -> None:
    """List sessions, newest first."""
    sessions = client().get("/sessions", params={"all": str(everyone).lower()})
    listing(
        sessions,
        as_json,
        ["SESSION", "STATUS", "NODE", "GPUS", "CREATED", "COMMAND", "MEMO", "NOTE"],
        lambda s: [
            s["id"] + (" (grading)" if s.get("kind") == "grading" else ""),
            s["status"],
            s["node"] or "-",
            gpus_column(s),
            (s["created_at"] or "").replace("T", " ").removesuffix("Z"),
            s["command"],
            s["memo"][:40],
            s["status_reason"][:60],
        ],
    )


@click.command()
@click.argument("session")
@click.option("-f", "--follow", "follow_", is_flag=True, help="keep printing until it ends")
@click.option("--json", "as_json", is_flag=True)
def logs(session: str, follow_: bool, as_json: bool) -> None:
    """Print a session's log."""
    api = client()
    if follow_ and not as_json:
        sys.exit(follow(api, session))
    path, after, lines = session_path(session), -1, []
    while True:
        body = api.get(f"{path}/logs", params={"after": after, "limit": 5000})
        if not body["lines"]:
            break
        lines.extend(body["lines"])
        after = body["lines"][-1]["seq"]
    if as_json:
        emit_json(lines)
    else:
        for line in lines:
            click.echo(line["text"])


@click.command()
@click.argument("session")
@click.option("--json", "as_json", is_flag=True)
def stop(session: str, as_json: bool) -> None:
    """Stop a session."""
    body = client().post(session_path(session) + "/stop")
    if as_json:
        emit_json(body)
    else:
        click.echo(f"{body['id']}: stop requested ({body['status']})")


@click.command()
@click.argument("sessions", nargs=-1, required=True)
def rm(sessions: tuple[str, ...]) -> None:
    """Remove ended sessions with their logs, events and checkpoints."""
    api = client()
    for ident in sessions:
        api.call("DELETE", session_path(ident))
        click.echo(f"removed {ident}")


@click.command()
@click.argument("session")
@click.option("--tag", help="only this tag")
@click.option("--json", "as_json", is_flag=True)
def events(session: str, tag: str | None, as_json: bool) -> None:
    """The scalars a session reported, in the order they arrived."""
    api, found, cursor = client(), [], 0
    while True:
        params: dict[str, Any] = {"after": cursor, **({"tag": tag} if tag else {})}
        body = api.get(session_path(session) + "/events", params=params)
        if not body["events"]:
            break
        found.extend(body["events"])
        cursor = body["cursor"]
    listing(
        found,
        as_json,
        ["STEP", "TAG", "VALUE"],
        lambda e: [str(e["step"]), e["tag"], f"{e['value']:.6g}"],
    )


@click.command()
@click.argument("session")
@click.option("--json", "as_json", is_flag=True)
def eventlen(session: str, as_json: bool) -> None:
    """How many points a session reported, per tag."""
    listing(
        client().get(session_path(session) + "/series"),
        as_json,
        ["TAG", "POINTS", "STEPS", "LAST"],
        lambda s: [
            s["tag"],
            str(s["count"]),
            f"{s['first_step']}..{s['last_step']}",
            f"{s['last_value']:.6g}",
        ],
    )


@click.command()
@click.argument("session")
@click.argument("text")
def memo(session: str, text: str) -> None:
    """Set SESSION's memo (`""` clears it)."""
    body = client().call("PATCH", session_path(session), json={"memo": text}).json()
    click.echo(f"{body['id']}: {body['memo'] or '(no memo)'}")


@click.command()
@click.argument("session")
@click.option("--checkpoint", help="this checkpoint rather than the last one saved")
@click.option("--detach", is_flag=True, help="print the new session's id and return")
def resume(session: str, checkpoint: str | None, detach: bool) -> None:
    """Go on from a stopped, failed, killed or lost SESSION's last checkpoint, as a new
    session linked to it (its code reads the checkpoint's name in sdk.RESUME)."""
    api = client()
    body = api.post(session_path(session) + "/resume", json={"checkpoint": checkpoint})
    click.echo(body["id"])
    if not detach:
        sys.exit(follow(api, body["id"]))


@click.command()
@click.argument("session")
@click.option("--json", "as_json", is_flag=True)
def command(session: str, as_json: bool) -> None:
    """The exact command line a session runs."""
    body = client().get(session_path(session) + "/command")
    if as_json:
        emit_json(body)
    else:
        click.echo(body["command"])


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("session")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", default=60.0, show_default=True, help="seconds it may run")
def exec_(session: str, command: tuple[str, ...], timeout: float) -> None:
    """Run COMMAND beside a running session, in its container: podium exec S -- ls -l"""
    body = client().post(
        session_path(session) + "/exec",
        json={"command": list(command), "timeout": timeout},
        timeout=timeout + 30,
    )
    click.echo(body["output"], nl=False)
    sys.exit(body["exit_code"] if 0 <= body["exit_code"] < 256 else 1)


@click.command()
@click.argument("session")
def sh(session: str) -> None:
    """A shell prompt in a running session's container: each line runs with `sh -c`
    in the session's folder (no terminal: no editors or pagers). `exit` or Ctrl-D ends."""
    api, path = client(), session_path(session)
    while True:
        try:
            line = input(f"{session}$ ")
        except EOFError:
            click.echo()
            return
        if line.strip() in ("exit", "logout"):
            return
        if not line.strip():
            continue
        try:
            body = api.post(path + "/exec", json={"command": ["sh", "-c", line]}, timeout=90)
        except CliError as exc:
            click.echo(f"podium: error: {exc}", err=True)
            continue
        click.echo(body["output"], nl=False)


COMMANDS = [run, fork, resume, ps, logs, stop, rm, events, eventlen, memo, command, exec_, sh]
