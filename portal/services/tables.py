"""The CSV files of competitions: test inputs, labels and predictions.

Every check names the first problem it finds, with its line number, so that a
participant can fix a file without guessing.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

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
    if '"' not in text:
        # No quoting: splitting is what the csv module would do, several times faster.
        lines = [line.removesuffix("\r") for line in text.split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        rows = [line.split(",") if line else [] for line in lines]
    else:
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
    values in the ids' order. Raises TableError naming the first problem.

    A well-formed file takes the fast path (whole-column checks); only a file with a
    problem is walked row by row, to name the first problem and its line."""
    checks = (numeric, binary, probabilities)
    fast = _fast_column(data, columns, ids, checks)
    if fast is not None:
        return fast
    header, rows = _rows(data, what)
    if header != columns:
        raise TableError(
            f"the {what} must have the columns {','.join(columns)}; it has {','.join(header)}"
        )
    if len(rows) != len(ids):
        raise TableError(f"the {what} has {len(rows)} rows; the test set has {len(ids)}")
    return _walk(rows, ids, what, checks)


def _positions(ids: list[str]) -> dict[str, int]:
    key = id(ids)
    cached = _POSITIONS.get(key)
    if cached is None or cached[0] is not ids:
        _POSITIONS.clear()  # one round's ids at a time is the common case
        cached = _POSITIONS[key] = (ids, {ident: i for i, ident in enumerate(ids)})
    return cached[1]


_POSITIONS: dict[int, tuple[list[str], dict[str, int]]] = {}


def _fast_column(
    data: bytes, columns: list[str], ids: list[str], checks: tuple[bool, bool, bool]
) -> list[str] | None:
    """The values in the ids' order when the file is plain (no quotes, no spaces around
    cells, exactly one comma per line) and every check passes, in whole-column
    operations; None sends the file to the row-by-row walk."""
    numeric, binary, probabilities = checks
    if any(mark in data for mark in (b'"', b"\r", b" ", b"\t", b"\x00")):
        return None
    try:
        text = data.decode("utf-8-sig").rstrip("\n")
    except UnicodeDecodeError:
        return None
    header, _, _ = text.partition("\n")
    if header.split(",") != columns:
        return None
    raw = np.frombuffer(text.encode(), dtype=np.uint8)
    newlines = np.flatnonzero(raw == ord("\n"))
    count = len(newlines)  # lines after the header
    if count != len(ids):
        return None
    commas_per_line = np.bincount(
        np.searchsorted(newlines, np.flatnonzero(raw == ord(",")), side="right"),
        minlength=count + 1,
    )
    if len(commas_per_line) != count + 1 or not (commas_per_line == 1).all():
        return None
    cells = text.replace("\n", ",").split(",")[2:]
    idents, values = cells[0::2], cells[1::2]
    position = _positions(ids)
    order = list(map(position.get, idents))
    if None in order or len(set(order)) != len(order):
        return None
    if any(value.lower() in MISSING for value in set(values)):
        return None
    if numeric:
        try:
            numbers = np.array(values, dtype=float)
        except ValueError:
            return None
        if not np.isfinite(numbers).all():
            return None
        if binary and not np.isin(numbers, (0.0, 1.0)).all():
            return None
        if probabilities and not ((numbers >= 0.0) & (numbers <= 1.0)).all():
            return None
    result = [""] * len(ids)
    for index, value in zip(order, values, strict=True):
        result[index] = value  # type: ignore[index]
    return result


def _walk(
    rows: list[list[str]], ids: list[str], what: str, checks: tuple[bool, bool, bool]
) -> list[str]:
    """Row by row: the values in the ids' order, or the first problem with its line."""
    numeric, binary, probabilities = checks
    position = _positions(ids)
    seen: set[int] = set()
    result = [""] * len(ids)
    for line, row in enumerate(rows, start=2):
        if len(row) != 2:
            raise TableError(f"line {line} of the {what} has {len(row)} cells, not 2")
        ident, value = row[0].strip(), row[1].strip()
        index = position.get(ident)
        if index is None:
            raise TableError(f"line {line} of the {what}: id {ident!r} is not in the test set")
        if index in seen:
            raise TableError(f"line {line} of the {what}: id {ident!r} appears twice")
        seen.add(index)
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
        result[index] = value
    return result
