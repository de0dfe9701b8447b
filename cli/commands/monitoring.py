"""`podium gpumonitor` (a session's resource history) and `podium gpustat` (the
cluster's GPUs now)."""

from __future__ import annotations

import click

from cli.context import client
from cli.output import emit_json, listing

SPARKS = "▁▂▃▄▅▆▇█"
WIDTH = 40
LABELS = {
    "cpu_percent": "CPU %",
    "memory_mb": "memory MiB",
    "utilization": "util %",
    "memory_mb@gpu": "memory MiB",
    "temperature_c": "temp °C",
    "power_w": "power W",
}


def sparkline(values: list[float], width: int = WIDTH) -> str:
    """The line squeezed into `width` characters, each the mean of its slice."""
    if not values:
        return ""
    slices = [
        values[
            i * len(values) // width : max(
                (i + 1) * len(values) // width, i * len(values) // width + 1
            )
        ]
        for i in range(min(width, len(values)))
    ]
    means = [sum(s) / len(s) for s in slices]
    low, high = min(means), max(means)
    span = (high - low) or 1.0
    return "".join(SPARKS[min(int((m - low) / span * len(SPARKS)), len(SPARKS) - 1)] for m in means)


def _label(name: str) -> str:
    if name.startswith("gpu"):
        gpu, _, field = name.partition("/")
        return f"GPU {gpu[3:]} " + LABELS.get(
            field + "@gpu" if field == "memory_mb" else field, field
        )
    return LABELS.get(name, name)


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


@click.command()
@click.argument("session")
@click.option("--json", "as_json", is_flag=True)
def gpumonitor(session: str, as_json: bool) -> None:
    """SESSION's GPU utilisation and memory, CPU and memory over its run."""
    body = client().get(f"/sessions/{session}/resources")
    if as_json:
        emit_json(body)
        return
    gpus = ", ".join(
        f"{g['index']} ({g['model']}{', simulated' if g['simulated'] else ''})"
        for g in body["gpus"]
    )
    click.echo(f"session {body['session']} ({body['status']}), GPUs: {gpus or 'none'}")
    average = body["average_gpu_utilization"]
    if body["simulated_gpus"]:
        click.echo("its GPUs are simulated: they report no utilisation")
    elif body["gpus"]:
        click.echo(
            "average GPU utilisation: "
            + ("no reading yet" if average is None else f"{average:.1f}%")
            + (
                f", peak GPU memory {body['gpu_memory_peak_mb']} MiB"
                if body["gpu_memory_peak_mb"] is not None
                else ""
            )
        )
    if not body["series"]:
        click.echo("no samples yet")
        return
    rows = []
    for name, line in sorted(
        body["series"].items(), key=lambda item: (item[0].startswith("gpu"), item[0])
    ):
        values = line["value"]
        if not values:
            continue
        rows.append(
            [
                _label(name),
                f"{values[-1]:.1f}",
                f"{min(values):.1f}",
                f"{max(values):.1f}",
                sparkline(values),
            ]
        )
    span = max((line["t"][-1] for line in body["series"].values() if line["t"]), default=0)
    listing(rows, False, ["SERIES", "NOW", "MIN", "MAX", f"OVER {_duration(span)}"], lambda r: r)


@click.command()
@click.option("--json", "as_json", is_flag=True)
def gpustat(as_json: bool) -> None:
    """The cluster's GPUs: node, index, model, who holds it, utilisation, memory."""

    def row(g: dict) -> list[str]:
        held = g.get("holders") or []
        if len(held) > 1 or (held and held[0]["share"] < 1):
            holder = ", ".join(f"{h['session'] or h['user']} ({h['share']:g})" for h in held)
        else:
            holder = g["session"] or g["user"] or "-"
        if g["simulated"]:
            use, memory = "simulated", "-"
        else:
            use = "-" if g["utilization_percent"] is None else f"{g['utilization_percent']:.0f}%"
            memory = (
                "-"
                if g["memory_used_mb"] is None
                else f"{g['memory_used_mb']}/{g['memory_total_mb']} MiB"
            )
        return [g["node"], str(g["index"]), g["model"], holder, use, memory, g["node_status"]]

    listing(
        client().get("/cluster/gpus"),
        as_json,
        ["NODE", "GPU", "MODEL", "HELD BY", "UTIL", "MEMORY", "NODE STATE"],
        row,
    )


COMMANDS = [gpumonitor, gpustat]
