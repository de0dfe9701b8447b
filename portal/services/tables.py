"""The CSV files of competitions: test inputs, labels and predictions.

Every check names the first problem it finds, with its line number, so that a
participant can fix a file without guessing.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from portal.errors import ApiError

PREDICTION_COLUMNS = ["id", "prediction"]
LABEL_COLUMNS = ["id", "label"]
MISSING = {"", "nan", "-nan", "+nan", "na", "n/a", "null", "none"}


class TableError(ApiError):
    def __init__(self, message: str):
        super().__init__(message, code="invalid_file", status=422)


def _rows(data: bytes, what: str) -> tuple[list[str], list[list[str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TableError(f"the {what} is not a CSV file: it is not UTF-8 text") from exc
    if "\x00" in text:
        raise TableError(f"the {what} is not a CSV file: it holds binary data")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise TableError(f"the {what} is not a CSV file: {exc}") from exc
    if not rows:
        raise TableError(f"the {what} is empty")
    header = [cell.strip() for cell in rows[0]]
    return header, rows[1:]


def read_inputs(data: bytes) -> list[str]:
    """The test inputs' ids, in file order (a CSV with an `id` column)."""
    header, rows = _rows(data, "test inputs file")
    if "id" not in header:
        raise TableError("the test inputs file has no `id` column")
    column = header.index("id")
    ids: list[str] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise TableError(
                f"line {line} of the test inputs has {len(row)} cells, not {len(header)}"
            )
        ident = row[column].strip()
        if not ident or ident in seen:
            raise TableError(
                f"line {line} of the test inputs has an empty or repeated id {ident!r}"
            )
        seen.add(ident)
        ids.append(ident)
    if not ids:
        raise TableError("the test inputs file has no rows")
    return ids


@dataclass(frozen=True)
class Column:
    """One value per test id, in the order of the round's ids."""

    values: list[str]


def read_column(
    data: bytes,
    ids: list[str],
    *,
    columns: list[str],
    what: str,
    numeric: bool,
    binary: bool = False,
    probabilities: bool = False,
) -> list[str]:
    """Check a two-column CSV (`id` and a value) against the round's ids and return the
    values in the ids' order. Raises TableError naming the first problem."""
    header, rows = _rows(data, what)
    if header != columns:
        raise TableError(
            f"the {what} must have the columns {','.join(columns)}; it has {','.join(header)}"
        )
    if len(rows) != len(ids):
        raise TableError(f"the {what} has {len(rows)} rows; the test set has {len(ids)}")
    position = {ident: i for i, ident in enumerate(ids)}
    values: list[str | None] = [None] * len(ids)
    for line, row in enumerate(rows, start=2):
        if len(row) != 2:
            raise TableError(f"line {line} of the {what} has {len(row)} cells, not 2")
        ident, value = row[0].strip(), row[1].strip()
        index = position.get(ident)
        if index is None:
            raise TableError(f"line {line} of the {what}: id {ident!r} is not in the test set")
        if values[index] is not None:
            raise TableError(f"line {line} of the {what}: id {ident!r} appears twice")
        if value.lower() in MISSING:
            raise TableError(f"line {line} of the {what}: the value for id {ident!r} is missing")
        if numeric:
            try:
                number = float(value)
            except ValueError:
                raise TableError(
                    f"line {line} of the {what}: {value!r} for id {ident!r} is not a number"
                ) from None
            if not math.isfinite(number):
                raise TableError(f"line {line} of the {what}: {value!r} is not a finite number")
            if binary and number not in (0.0, 1.0):
                raise TableError(f"line {line} of the {what}: a label must be 0 or 1, not {value}")
            if probabilities and not 0.0 <= number <= 1.0:
                raise TableError(
                    f"line {line} of the {what}: {value} is not a probability between 0 and 1"
                )
        values[index] = value
    # Same count, every id known and none twice: every id is there.
    return values  # type: ignore[return-value]
