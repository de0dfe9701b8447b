"""Comparing sessions from the command line: `podium diff` (arguments and code) and
`podium plot` (their curves, as an HTML page or a PNG)."""

from __future__ import annotations

import difflib
import io
from pathlib import Path
from typing import Any

import click

from cli.archive import members, open_stream
from cli.client import CliError
from cli.commands.sessions import session_path
from cli.context import client

TEXT_LIMIT = 1_000_000  # bytes of one file compared as text
# Stable colours, as the comparison page gives them (Bokeh's Category20).
PALETTE = [
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
    "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
    "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
]  # fmt: skip


def _full_id(ident: str) -> str:
    return client().get(session_path(ident))["id"]


def _code(ident: str) -> dict[str, bytes]:
    response = client().call("GET", session_path(ident) + "/code", timeout=600)
    files = {}
    with open_stream(io.BytesIO(response.content)) as tar:
        for member in members(tar):
            if member.isfile():
                source = tar.extractfile(member)
                if source is not None:
                    files[member.name.removeprefix("./")] = source.read(TEXT_LIMIT + 1)
    return files


@click.command()
@click.argument("first")
@click.argument("second")
def diff(first: str, second: str) -> None:
    """How SECOND differs from FIRST: arguments, then a unified diff of their code."""
    first, second = _full_id(first), _full_id(second)
    table = client().get("/compare", params={"s": f"{first},{second}"})["arguments"]
    rows = {row["session"]: row["values"] for row in table["rows"]}
    click.echo(f"arguments ({len(table['shared'])} shared)")
    if not table["differing"]:
        click.echo("  no difference")
    for name in table["differing"]:
        shown = name if not name.startswith("_") else f"#{name[1:]}"
        click.echo(f"  {shown}: {rows[first][name] or '-'} -> {rows[second][name] or '-'}")
    old, new = _code(first), _code(second)
    changed = False
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        changed = True
        if b"\0" in (a or b"") + (b or b"") or len(a or b"") > TEXT_LIMIT:
            click.echo(f"Binary files {first}/{name} and {second}/{name} differ")
            continue
        click.echo(
            "".join(
                difflib.unified_diff(
                    (a or b"").decode("utf-8", "replace").splitlines(keepends=True),
                    (b or b"").decode("utf-8", "replace").splitlines(keepends=True),
                    fromfile=f"{first}/{name}" if a is not None else "/dev/null",
                    tofile=f"{second}/{name}" if b is not None else "/dev/null",
                )
            ),
            nl=False,
        )
    if not changed:
        click.echo("code: identical")


@click.command()
@click.argument("sessions", nargs=-1, required=True)
@click.option("--tag", "tags", multiple=True, help="only these tags (repeatable)")
@click.option("--x", "x_axis", type=click.Choice(["step", "time"]), default="step")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("compare.html"),
    show_default=True,
    help="FILE.html (an interactive Bokeh page, self-contained) or FILE.png",
)
@click.option("--points", default=1000, show_default=True, help="points per line")
def plot(
    sessions: tuple[str, ...], tags: tuple[str, ...], x_axis: str, output: Path, points: int
) -> None:
    """The curves of SESSIONS overlaid, one plot per tag, as the comparison page draws
    them. A PNG is drawn with Pillow (no browser needed)."""
    if output.suffix not in (".html", ".png"):
        raise CliError(f"{output}: write a .html or a .png")
    api = client()
    names = ",".join(sessions)
    first = api.get("/compare", params={"s": names, "points": points})
    order = first["sessions"]
    wanted = list(tags) or first["tags"]
    missing = sorted(set(wanted) - set(first["tags"]))
    if missing:
        raise CliError(f"none of these sessions reported {', '.join(missing)}")
    if not wanted:
        raise CliError("these sessions reported nothing to plot")
    lines = {
        tag: api.get("/compare", params={"s": names, "tag": tag, "points": points})["lines"]
        for tag in wanted
    }
    if output.suffix == ".html":
        _html(lines, order, x_axis, output)
    else:
        _png(lines, order, x_axis, output)
    click.echo(f"{len(wanted)} plots of {len(order)} sessions -> {output}")


def _xs(line: dict[str, Any], x_axis: str) -> list[float]:
    if x_axis == "step":
        return line["step"]
    start = line["wall_time"][0] if line["wall_time"] else 0.0
    return [w - start for w in line["wall_time"]]


def _html(lines: dict[str, list[dict]], order: list[str], x_axis: str, output: Path) -> None:
    from bokeh.io import save
    from bokeh.layouts import gridplot
    from bokeh.models import HoverTool
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    colors = {ident: PALETTE[i % len(PALETTE)] for i, ident in enumerate(order)}
    figures = []
    for tag, found in lines.items():
        plot = figure(
            title=tag,
            height=300,
            sizing_mode="stretch_width",
            x_axis_label="step" if x_axis == "step" else "seconds",
            tools="pan,wheel_zoom,box_zoom,reset,save",
        )
        for line in found:
            plot.line(
                _xs(line, x_axis),
                line["value"],
                color=colors[line["session"]],
                line_width=2,
                legend_label=line["session"],
            )
        plot.add_tools(HoverTool(tooltips=[("x", "$x"), (tag, "$y")]))
        plot.legend.click_policy = "hide"
        figures.append(plot)
    grid: list[list[Any]] = [figures[i : i + 2] for i in range(0, len(figures), 2)]
    save(
        gridplot(grid, sizing_mode="stretch_width"),
        filename=str(output),
        resources=INLINE,
        title="podium plot",
    )


def _png(lines: dict[str, list[dict]], order: list[str], x_axis: str, output: Path) -> None:
    from PIL import Image, ImageDraw

    colors = {ident: PALETTE[i % len(PALETTE)] for i, ident in enumerate(order)}
    width, height, margin = 900, 340, 56
    image = Image.new("RGB", (width, height * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for row, (tag, found) in enumerate(lines.items()):
        top = row * height
        box = (margin, top + 30, width - 180, top + height - margin)
        xs = [x for line in found for x in _xs(line, x_axis)]
        ys = [y for line in found for y in line["value"]]
        if not xs:
            continue
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

        def at(x: float, y: float, x0=x0, x1=x1, y0=y0, y1=y1, box=box) -> tuple[float, float]:
            return (
                box[0] + (x - x0) / (x1 - x0) * (box[2] - box[0]),
                box[3] - (y - y0) / (y1 - y0) * (box[3] - box[1]),
            )

        draw.text((margin, top + 8), tag, fill="black")
        draw.rectangle(box, outline="#888888")
        for value, anchor in ((y1, box[1]), (y0, box[3])):
            draw.text((4, anchor - 6), f"{value:.4g}", fill="#444444")
        draw.text((box[0], box[3] + 6), f"{x0:.6g}", fill="#444444")
        draw.text((box[2] - 60, box[3] + 6), f"{x1:.6g} {'step' if x_axis == 'step' else 's'}")
        for index, line in enumerate(found):
            points = [at(x, y) for x, y in zip(_xs(line, x_axis), line["value"], strict=True)]
            color = colors[line["session"]]
            if len(points) > 1:
                draw.line(points, fill=color, width=2)
            elif points:
                draw.ellipse(
                    [points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2],
                    fill=color,
                )
            draw.rectangle(
                [width - 170, top + 34 + 16 * index, width - 160, top + 44 + 16 * index], fill=color
            )
            draw.text((width - 155, top + 32 + 16 * index), line["session"], fill="black")
    image.save(output)


COMMANDS = [diff, plot]
