from __future__ import annotations

from bokeh.resources import Resources
from bokeh.util.paths import static_path
from flask import Blueprint, send_from_directory, url_for

bp = Blueprint("assets", __name__)


@bp.route("/bokeh/static/<path:filename>")
def bokeh_static(filename: str):
    return send_from_directory(static_path(), filename, max_age=7 * 24 * 3600)


def bokeh_resources() -> Resources:
    """BokehJS from this portal, never from a CDN."""
    root = url_for("assets.bokeh_static", filename="").removesuffix("static/")
    return Resources(mode="server", root_url=root, components=["bokeh"])
