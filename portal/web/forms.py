"""Small helpers the pages' forms share."""

from __future__ import annotations

from flask_wtf import FlaskForm


def form_problem(form: FlaskForm) -> str:
    """A refused form's first problem, in one line: "LABEL: what is wrong"."""
    if not form.errors:
        return "the form was not complete"
    field, messages = next(iter(form.errors.items()))
    label = getattr(getattr(form, field, None), "label", None)
    return f"{label.text if label else field}: {messages[0]}"
