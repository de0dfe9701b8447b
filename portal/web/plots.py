"""Bokeh plots of reported scalars: a session's (one figure per tag, which its page
grows as points arrive) and a comparison's."""

from __future__ import annotations

from typing import Any

from bokeh.embed import json_item
from bokeh.events import Reset
from bokeh.layouts import column, gridplot
from bokeh.models import (
    BasicTicker,
    ColumnDataSource,
    CustomJS,
    HoverTool,
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
    layout = gridplot(
        list(figures),
        ncols=2,
        sizing_mode="stretch_width",
        merge_tools=False,
        toolbar_options={"logo": None},
    )
    return dict(json_item(layout))


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
