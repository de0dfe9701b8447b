"""Bokeh plots: a session's reported scalars (one figure per tag, which its page grows
as points arrive), a comparison's, a session's resources and the cluster's use."""

from __future__ import annotations

from typing import Any

from bokeh.embed import json_item
from bokeh.events import Reset
from bokeh.layouts import column, gridplot
from bokeh.models import (
    BasicTicker,
    ColumnDataSource,
    CustomJS,
    DataRange1d,
    HoverTool,
    Range1d,
)
from bokeh.palettes import Category10_10, Category20_20
from bokeh.plotting import figure

PALETTE = Category20_20


def scalar_source_name(tag: str) -> str:
    return f"scalars:{tag}"


def _zoomable(plot: Any, tag: str) -> None:
    """Zooming or panning calls the page's `podiumZoom(tag, start, end)`, which fetches
    the finer line of the range it shows; a reset calls it with no range, for the whole
    line again."""
    plot.x_range.js_on_change(
        "end",
        CustomJS(
            args={"tag": tag},
            code="if (window.podiumZoom) window.podiumZoom(tag, cb_obj.start, cb_obj.end);",
        ),
    )
    plot.js_on_event(
        Reset,
        CustomJS(
            args={"tag": tag}, code="if (window.podiumZoom) window.podiumZoom(tag, null, null);"
        ),
    )


def _grid(figures: list[Any]) -> dict[str, Any]:
    """Figures two a row, each toolbar its own, as a JSON item for the page."""
    layout = gridplot(
        list(figures),
        ncols=2,
        sizing_mode="stretch_width",
        merge_tools=False,
        toolbar_options={"logo": None},
    )
    return dict(json_item(layout))


def scalars_plot(lines: dict[str, dict[str, list]]) -> dict[str, Any]:
    """A JSON item for `Bokeh.embed.embed_item`: a figure per tag, each line downsampled
    (`metrics.line`); the page streams new points onto the sources named
    `scalars:TAG` as they arrive."""
    figures = []
    for position, (tag, line) in enumerate(lines.items()):
        source = ColumnDataSource(
            name=scalar_source_name(tag), data={"step": line["step"], "value": line["value"]}
        )
        plot = figure(
            title=tag,
            height=260,
            sizing_mode="stretch_width",
            x_axis_label="step",
            tools="pan,wheel_zoom,box_zoom,reset,save",
        )
        color = Category10_10[position % len(Category10_10)]
        plot.line("step", "value", source=source, line_width=2, color=color)
        plot.scatter("step", "value", source=source, size=5, color=color)
        plot.add_tools(HoverTool(tooltips=[("step", "@step"), (tag, "@value{0.0000}")]))
        plot.xaxis.ticker = BasicTicker(min_interval=1)  # steps are whole numbers
        plot.toolbar.logo = None
        _zoomable(plot, tag)
        figures.append(plot)
    return _grid(figures)


def compare_plot(lines_by_tag: dict[str, list[dict[str, Any]]], order: list[str]) -> dict[str, Any]:
    """The comparison: per tag a figure with every session's line in its stable colour
    (its place in `order`), and a twin with a log y axis, hidden until asked for. The
    page's script switches x between step and time, smooths, and highlights."""
    colors = {ident: PALETTE[i % len(PALETTE)] for i, ident in enumerate(order)}
    figures = []
    for tag, lines in lines_by_tag.items():
        pair = []
        for axis in ("linear", "log"):
            plot = figure(
                title=tag,
                name=f"figure:{tag}:{axis}",
                height=280,
                sizing_mode="stretch_width",
                x_axis_label="step",
                y_axis_type=axis,
                visible=axis == "linear",
                tools="pan,wheel_zoom,box_zoom,reset,save",
            )
            renderers: list[Any] = []
            for line in lines:
                ident = line["session"]
                walls = line["wall_time"]
                start = line.get("first_wall_time", walls[0] if walls else 0.0)
                source = ColumnDataSource(
                    name=f"source:{ident}:{tag}:{axis}",
                    data={
                        "step": line["step"],
                        "time": [w - start for w in walls],
                        "x": line["step"],
                        "raw": line["value"],
                        "y": line["value"],
                        "session": [ident] * len(line["step"]),
                    },
                )
                renderers.append(
                    plot.line(
                        "x",
                        "y",
                        source=source,
                        name=f"line:{ident}",
                        line_width=2,
                        color=colors[ident],
                        legend_label=ident,
                    )
                )
            plot.add_tools(
                HoverTool(
                    renderers=renderers,
                    tooltips=[("session", "@session"), ("step", "@step"), (tag, "@y{0.0000}")],
                    line_policy="nearest",
                    callback=CustomJS(
                        code="if (window.podiumHighlight && cb_data.index.line_indices.length)"
                        " window.podiumHighlight(cb_data.renderer.name.slice(5));"
                    ),
                )
            )
            _zoomable(plot, tag)
            plot.legend.click_policy = "hide"
            plot.legend.location = "top_right"
            plot.toolbar.logo = None
            pair.append(plot)
        figures.append(column(*pair, sizing_mode="stretch_width"))
    # One plot a row, full width: readable on a phone as on a wide screen.
    return dict(json_item(column(*figures, sizing_mode="stretch_width")))


RESOURCE_FIGURES = (
    # (title, y label, which series: a name, or a GPU field suffix)
    ("GPU utilisation", "%", "/utilization"),
    ("GPU memory used", "MiB", "/memory_mb"),
    ("CPU", "% of one core", "cpu_percent"),
    ("Memory", "MiB", "memory_mb"),
)


def resource_source_name(series: str) -> str:
    return f"resource:{series}"


def resources_plot(series: dict[str, dict[str, list]]) -> dict[str, Any] | None:
    """A session's resources over its run (seconds since it started): per GPU its
    utilisation and memory, and its CPU and memory; each line's source is named
    `resource:NAME` so that the page can replace its data as samples arrive."""
    figures = []
    for title, unit, which in RESOURCE_FIGURES:
        names = sorted(
            name
            for name in series
            if (name.startswith("gpu") and name.endswith(which))
            or (not which.startswith("/") and name == which)
        )
        if not names:
            continue
        plot = figure(
            title=title,
            height=220,
            sizing_mode="stretch_width",
            x_axis_label="seconds since it started",
            y_axis_label=unit,
            tools="pan,wheel_zoom,box_zoom,reset,save",
        )
        # From zero: a flat line of 28.4 MiB is not a cliff.
        plot.y_range = (
            Range1d(start=0, end=100) if which == "/utilization" else DataRange1d(start=0)
        )
        for position, name in enumerate(names):
            line = series[name]
            source = ColumnDataSource(
                name=resource_source_name(name), data={"t": line["t"], "value": line["value"]}
            )
            label = f"GPU {name[3:].partition('/')[0]}" if name.startswith("gpu") else title
            plot.line(
                "t",
                "value",
                source=source,
                line_width=2,
                color=Category10_10[position % len(Category10_10)],
                legend_label=label,
            )
        plot.add_tools(HoverTool(tooltips=[("s", "@t"), (title, "@value{0.0}")]))
        plot.legend.location = "top_left"
        plot.toolbar.logo = None
        figures.append(plot)
    if not figures:
        return None
    return _grid(figures)


def cluster_plot(history: dict[str, list]) -> dict[str, Any]:
    """The share of GPUs allocated, and the share of allocated GPUs at 80% or more."""
    from datetime import datetime

    times = [datetime.fromisoformat(t.removesuffix("Z")) for t in history["time"]]
    source = ColumnDataSource(
        data={
            "time": times,
            "allocated": [v * 100 for v in history["allocated"]],
            "busy": [float("nan") if v is None else v * 100 for v in history["busy"]],
        }
    )
    plot = figure(
        title="GPUs over time",
        height=280,
        sizing_mode="stretch_width",
        x_axis_type="datetime",
        x_axis_label="UTC",
        y_axis_label="%",
        tools="pan,wheel_zoom,box_zoom,reset,save",
        y_range=Range1d(start=0, end=100),
    )
    for series, color, label in (
        ("allocated", Category10_10[0], "GPUs allocated"),
        ("busy", Category10_10[1], "allocated GPUs at 80% or more"),
    ):
        plot.line("time", series, source=source, line_width=2, color=color, legend_label=label)
        # Points too: a span with one sample still shows.
        plot.scatter("time", series, source=source, size=4, color=color, legend_label=label)
    plot.add_tools(
        HoverTool(
            tooltips=[
                ("time", "@time{%F %H:%M}"),
                ("allocated", "@allocated{0.0}%"),
                ("busy", "@busy{0.0}%"),
            ],
            formatters={"@time": "datetime"},
        )
    )
    plot.legend.location = "top_left"
    plot.toolbar.logo = None
    return dict(json_item(plot))


def search_plot(
    search: dict[str, Any], lines: dict[str, dict[str, list]], order: list[str]
) -> dict[str, Any]:
    """A search's page: the metric over steps for each trial (for PBT, coloured by member,
    so that a member's lineage reads as one coloured path across its segments), and a
    parallel-coordinates plot of each trial's hyperparameters against the metric (each
    axis scaled to its range; log for loguniform; a choice at its index)."""
    from bokeh.models import FixedTicker, LinearColorMapper
    from bokeh.models.annotations import ColorBar
    from bokeh.palettes import Viridis256

    metric = search["metric"]
    pbt = search["algorithm"] == "pbt"
    trials = {t["session"]: t for t in search["trials"] if t["session"]}
    over_time = figure(
        title=f"{metric} over steps",
        height=320,
        sizing_mode="stretch_width",
        x_axis_label="step",
        y_axis_label=metric,
        tools="pan,wheel_zoom,box_zoom,reset,save",
    )
    renderers: list[Any] = []
    for index, ident in enumerate(order):
        line = lines.get(ident)
        trial = trials.get(ident)
        if not line or trial is None:
            continue
        color = PALETTE[(trial["member"] if pbt else index) % len(PALETTE)]
        label = f"member {trial['member']}" if pbt else f"trial {trial['number']}"
        source = ColumnDataSource(
            data={
                "step": line["step"],
                "value": line["value"],
                "trial": [trial["number"]] * len(line["step"]),
                "session": [ident] * len(line["step"]),
            }
        )
        renderers.append(
            over_time.line(
                "step", "value", source=source, line_width=2, color=color, legend_label=label
            )
        )
    over_time.add_tools(
        HoverTool(
            renderers=renderers,
            tooltips=[
                ("trial", "@trial"),
                ("session", "@session"),
                ("step", "@step"),
                (metric, "@value{0.0000}"),
            ],
        )
    )
    over_time.legend.click_policy = "hide"
    over_time.legend.location = "bottom_right"
    over_time.toolbar.logo = None

    space = search["spec"]["space"]
    names = list(space)
    ended = [t for t in search["trials"] if t["value"] is not None]
    axes = [*names, metric]
    values = [t["value"] for t in ended]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    mapper = LinearColorMapper(palette=Viridis256, low=low, high=high if high > low else low + 1)
    coordinates = figure(
        title=f"hyperparameters against {metric}",
        height=340,
        sizing_mode="stretch_width",
        x_range=Range1d(start=-0.3, end=len(axes) - 0.7),
        y_range=Range1d(start=-0.08, end=1.08),
        tools="pan,box_zoom,reset,save",
    )
    xs, ys, colors, numbers, texts = [], [], [], [], []
    for trial in ended:
        ys.append(
            [_scaled(space[n], trial["params"].get(n)) for n in names]
            + [(trial["value"] - low) / (high - low) if high > low else 0.5]
        )
        xs.append(list(range(len(axes))))
        colors.append(trial["value"])
        numbers.append(trial["number"])
        texts.append(", ".join(f"{n}={_short(trial['params'].get(n))}" for n in names))
    source = ColumnDataSource(
        data={"xs": xs, "ys": ys, "value": colors, "trial": numbers, "params": texts}
    )
    drawn = coordinates.multi_line(
        "xs",
        "ys",
        source=source,
        line_width=2,
        line_alpha=0.8,
        color={"field": "value", "transform": mapper},
    )
    coordinates.add_tools(
        HoverTool(
            renderers=[drawn],
            tooltips=[("trial", "@trial"), (metric, "@value{0.0000}"), ("", "@params")],
        )
    )
    coordinates.xaxis.ticker = FixedTicker(ticks=list(range(len(axes))))
    coordinates.xaxis.major_label_overrides = {i: name for i, name in enumerate(axes)}
    coordinates.yaxis.visible = False
    coordinates.ygrid.visible = False
    for index, name in enumerate(axes):
        bottom, top = _ends(space[name]) if name in space else (_short(low), _short(high))
        coordinates.text(
            x=[index, index],
            y=[-0.07, 1.02],
            text=[bottom, top],
            text_align="center",
            text_font_size="10px",
        )
        coordinates.line(x=[index, index], y=[0, 1], color="#888", line_width=1)
    coordinates.add_layout(ColorBar(color_mapper=mapper, title=metric, width=10), "right")
    coordinates.toolbar.logo = None
    return dict(json_item(column(over_time, coordinates, sizing_mode="stretch_width")))


def _short(value: Any) -> str:
    return format(value, ".4g") if isinstance(value, float) else str(value)


def _ends(param: dict[str, Any]) -> tuple[str, str]:
    ((kind, given),) = param.items()
    if kind == "choice":
        return str(given[0]), str(given[-1])
    return _short(given[0]), _short(given[1])


def _scaled(param: dict[str, Any], value: Any) -> float:
    """Where `value` sits on its parameter's axis, 0 to 1."""
    import math

    ((kind, given),) = param.items()
    if kind == "choice":
        index = given.index(value) if value in given else 0
        return index / (len(given) - 1) if len(given) > 1 else 0.5
    low, high = float(given[0]), float(given[1])
    if value is None:
        return 0.5
    if kind == "loguniform":
        return (math.log(float(value)) - math.log(low)) / (math.log(high) - math.log(low))
    return (float(value) - low) / (high - low)
