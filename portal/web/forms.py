"""Small helpers the pages' forms share."""

from __future__ import annotations

from typing import overload

from flask import request
from flask_wtf import FlaskForm

from portal.routing import DATABASE_INT_MAX


def form_problem(form: FlaskForm) -> str:
    """A refused form's first problem, in one line: "LABEL: what is wrong"."""
    if not form.errors:
        return "the form was not complete"
    field, messages = next(iter(form.errors.items()))
    label = getattr(getattr(form, field, None), "label", None)
    return f"{label.text if label else field}: {messages[0]}"


MAX_PAGE = 10**9  # a page number beyond this is the last page anyone could reach


@overload
def query_int(name: str) -> int | None: ...
@overload
def query_int(name: str, default: int) -> int: ...
@overload
def query_int(name: str, default: None) -> int | None: ...


def query_int(name: str, default: int | None = None) -> int | None:
    """An integer query argument that a database column can hold; `default` when it is
    missing, not a number, or out of range."""
    return request.args.get(name, default, type=database_int)


def page_arg() -> int:
    """The `page` query argument: 1 and up."""
    return min(max(query_int("page", 1), 1), MAX_PAGE)


def database_int(value: str) -> int:
    number = int(value)
    if not -DATABASE_INT_MAX - 1 <= number <= DATABASE_INT_MAX:
        raise ValueError(f"{value} is out of range")
    return number


def parse_id(value: str | None) -> int | None:
    """A database id written in a form or path (digits only), or None."""
    if not value or not value.isdigit():
        return None
    number = int(value)
    return number if number <= DATABASE_INT_MAX else None
