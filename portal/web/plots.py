"""Bokeh plots of reported scalars: one figure per tag, each fed by an AjaxDataSource
that polls the portal, so the curves grow while the session runs."""

from __future__ import annotations

from typing import Any

from bokeh.embed import json_item
from bokeh.layouts import gridplot
from bokeh.models import AjaxDataSource, BasicTicker, HoverTool
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

POLL_MS = 1000


def scalar_source_name(tag: str) -> str:
    return f"scalars:{tag}"


def scalars_plot(tags: list[str], data_url_for_tag, *, live: bool) -> dict[str, Any]:
    """A JSON item for `Bokeh.embed.embed_item`; `data_url_for_tag(tag)` gives each feed."""
    figures = []
    for position, tag in enumerate(tags):
        source = AjaxDataSource(
            name=scalar_source_name(tag),
            data_url=data_url_for_tag(tag),
            method="GET",
            mode="replace",
            polling_interval=POLL_MS if live else None,
            data={"step": [], "value": []},
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
        figures.append(plot)
    layout = gridplot(
        list(figures),
        ncols=2,
        sizing_mode="stretch_width",
        merge_tools=False,
        toolbar_options={"logo": None},
    )
    return dict(json_item(layout))
