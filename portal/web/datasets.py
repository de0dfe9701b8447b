from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user

from portal.services import datasets as service

bp = Blueprint("datasets", __name__, url_prefix="/datasets")


def _viewer():
    return current_user if current_user.is_authenticated else None


@bp.route("")
def index():
    """Datasets the visitor may read (public ones without logging in)."""
    return render_template("datasets/list.html", datasets=service.visible(_viewer()))


@bp.route("/<name>")
def detail(name: str):
    dataset = service.find(_viewer(), name)
    return render_template(
        "datasets/detail.html",
        dataset=dataset,
        in_use={v.id: service.in_use(v) for v in dataset.versions},
    )
