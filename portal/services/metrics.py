"""Scalars: the series a session reports with `sdk.report`, stored for fast appends and
fast plots.

A series is one (session, tag). Points arrive in batches; each batch of a series is one
`scalar_chunks` row holding three numpy arrays (steps int64, values and wall times
float64), zlib-compressed: one INSERT per tag per batch, written with `executemany`.
Small chunks are merged into one once a series has `MERGE_AFTER` of them, so a long
series is read in a few rows. Each series also has a `scalar_series` row: count, first
and last point, minimum and maximum, and a summary of at most `BUCKETS` buckets
(per bucket: points, first and last step, the minimum and maximum with their steps, the
last value and wall times), updated as points arrive. Most batches change only the
summary's last rows: the row keeps those (`summary_tail`), and the rows before them lie
in full blocks of `BLOCK_ROWS` (`scalar_summary_blocks`), written once and rewritten
only when the buckets widen or a batch reaches back before the tail. A plot of the
whole series is drawn from the summary alone; a zoomed one from the chunks that overlap
the range.
Either way a line never ships more than about twice the plot's width in points, and its
last point is exact.

Duplicates: the SDK numbers its batches (`stream`, `seq`); a batch at or below the
session's last accepted number of the same stream was stored already (a retry whose
answer was lost) and is acknowledged without being stored again.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import bindparam, delete, func, insert, select, update

from portal.errors import ApiError, Conflict
from portal.extensions import db
from portal.models import ScalarChunk, ScalarSeries, ScalarSummaryBlock, Session

BUCKETS = 1024
BLOCK_ROWS = 64  # summary rows per stored block
MERGE_AFTER = 64  # small chunks of a series before they are merged into one
SMALL_CHUNK = 4096  # points
MAX_TAG = 128
# Tags the platform writes (a session's resource samples, `portal/services/monitoring.py`):
# refused from sessions, and left out of the scalars users list, follow and compare.
RESERVED = "podium/"
MAX_POINTS_PER_BATCH = 100_000
# Summary columns, one row per bucket.
N, FIRST_STEP, LAST_STEP, MIN, MIN_STEP, MAX, MAX_STEP, LAST, FIRST_WALL, LAST_WALL = range(10)
WIDTH = 10


class InvalidScalars(ApiError):
    def __init__(self, message: str):
        super().__init__(message, code="invalid_input", status=422)


@dataclass
class Batch:
    """One tag's points of a batch, sorted by step (a stable sort: for equal steps the
    order they were reported in)."""

    tag: str
    steps: np.ndarray
    values: np.ndarray
    walls: np.ndarray


def _pack(steps: np.ndarray, values: np.ndarray, walls: np.ndarray) -> bytes:
    return zlib.compress(
        steps.astype("<i8").tobytes()
        + values.astype("<f8").tobytes()
        + walls.astype("<f8").tobytes(),
        1,
    )


def _unpack(data: bytes, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = zlib.decompress(data)
    steps = np.frombuffer(raw, dtype="<i8", count=count)
    values = np.frombuffer(raw, dtype="<f8", count=count, offset=8 * count)
    walls = np.frombuffer(raw, dtype="<f8", count=count, offset=16 * count)
    return steps, values, walls


# Parsing -----------------------------------------------------------------------------


def parse(body: Any, *, reserved: bool = False) -> list[Batch]:
    """The points of a request: `{"scalars": {TAG: {"step": [...], "value": [...],
    "wall_time": [...]}}}` (columns, as the SDK sends them), or `{"events": [{"tag",
    "step", "value", "wall_time"}, ...]}` (rows)."""
    if not isinstance(body, dict):
        raise InvalidScalars("the body must be a JSON object")
    columns: dict[str, dict[str, list]] = {}
    events = body.get("events")
    if events is not None:
        if not isinstance(events, list):
            raise InvalidScalars("events must be a list")
        for index, event in enumerate(events):
            if not isinstance(event, dict) or not {"tag", "step", "value", "wall_time"} <= set(
                event
            ):
                raise InvalidScalars(f"events[{index}] needs tag, step, value and wall_time")
            column = columns.setdefault(event["tag"], {"step": [], "value": [], "wall_time": []})
            for key in ("step", "value", "wall_time"):
                column[key].append(event[key])
    scalars = body.get("scalars") or {}
    if not isinstance(scalars, dict):
        raise InvalidScalars("scalars must map tags to columns")
    for tag, column in scalars.items():
        if not isinstance(column, dict):
            raise InvalidScalars(f"{tag!r}: columns step, value and wall_time are needed")
        merged = columns.setdefault(tag, {"step": [], "value": [], "wall_time": []})
        for key in ("step", "value", "wall_time"):
            given = column.get(key)
            if not isinstance(given, list):
                raise InvalidScalars(f"{tag!r}: {key} must be a list")
            merged[key].extend(given)
    batches = []
    total = 0
    for tag, column in columns.items():
        if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG:
            raise InvalidScalars(f"a tag is a name of 1 to {MAX_TAG} characters, not {tag!r}")
        if tag.startswith(RESERVED) != reserved:
            raise InvalidScalars(
                f"{tag!r}: tags starting with {RESERVED!r} are the platform's"
                if not reserved
                else f"{tag!r} is not a resource tag"
            )
        lengths = {len(column[key]) for key in ("step", "value", "wall_time")}
        if len(lengths) != 1:
            raise InvalidScalars(f"{tag!r}: step, value and wall_time differ in length")
        try:
            steps = np.asarray(column["step"], dtype=np.int64)
            values = np.asarray(column["value"], dtype=np.float64)
            walls = np.asarray(column["wall_time"], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise InvalidScalars(
                f"{tag!r}: steps must be integers, values and wall times numbers"
            ) from None
        if steps.ndim != 1 or values.ndim != 1 or walls.ndim != 1:
            raise InvalidScalars(f"{tag!r}: each column is a flat list")
        if not (np.isfinite(values).all() and np.isfinite(walls).all()):
            raise InvalidScalars(f"{tag!r}: values and wall times must be finite numbers")
        if steps.size == 0:
            continue
        order = np.argsort(steps, kind="stable")
        batches.append(Batch(tag, steps[order], values[order], walls[order]))
        total += steps.size
    if total > MAX_POINTS_PER_BATCH:
        raise InvalidScalars(f"{total} points in one request; send at most {MAX_POINTS_PER_BATCH}")
    return batches


# Writing -----------------------------------------------------------------------------


def _claim_batch(session: Session, stream: str | None, seq: int | None) -> bool:
    """False when this numbered batch was stored already."""
    if stream is None or seq is None:
        return True
    claimed = (
        db.session.connection()
        .execute(_CLAIM, {"claim_id": session.id, "claim_stream": stream, "claim_seq": seq})
        .rowcount
    )
    return bool(claimed)


_sessions = Session.__table__
# Built once: a Core statement, compiled once, on the hottest write path.
_CLAIM = (
    _sessions.update()
    .where(
        _sessions.c.id == bindparam("claim_id"),
        (_sessions.c.events_stream != bindparam("claim_stream"))
        | (_sessions.c.events_seq < bindparam("claim_seq")),
    )
    .values(events_stream=bindparam("claim_stream"), events_seq=bindparam("claim_seq"))
)


def record(session: Session, body: Any, *, reserved: bool = False) -> int:
    """Store a request's points; returns how many were stored (0 for a batch stored
    before). `reserved`: the platform's own series (every tag under `RESERVED`)."""
    if session.state.is_final:
        raise Conflict(f"session {session.ident} has ended; it takes no more events")
    batches = parse(body, reserved=reserved)
    stream, seq = body.get("stream"), body.get("seq")
    if stream is not None and (not isinstance(stream, str) or len(stream) > 64):
        raise InvalidScalars("stream is a name of at most 64 characters")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
        raise InvalidScalars("seq is a number of 0 or more")
    if not _claim_batch(session, stream, seq):
        db.session.rollback()
        return 0
    if not batches:
        db.session.commit()
        return 0
    # Core statements on the session's connection: no ORM bookkeeping on the hot path.
    connection = db.session.connection()
    connection.execute(
        insert(ScalarChunk),
        [
            {
                "session_id": session.id,
                "tag": batch.tag,
                "first_step": int(batch.steps[0]),
                "last_step": int(batch.steps[-1]),
                "count": int(batch.steps.size),
                "data": _pack(batch.steps, batch.values, batch.walls),
            }
            for batch in batches
        ],
    )
    # The series rows, read and written as plain rows: this runs for every request.
    columns = [getattr(ScalarSeries, name) for name in SERIES_ROW_COLUMNS]
    existing = {
        row.tag: row
        for row in connection.execute(
            select(ScalarSeries.tag, *columns)
            .where(
                ScalarSeries.session_id == session.id,
                ScalarSeries.tag.in_([batch.tag for batch in batches]),
            )
            .with_for_update()
        )
    }
    summaries = {
        batch.tag: Summary.from_row(existing[batch.tag]) if batch.tag in existing else Summary()
        for batch in batches
    }
    reaching = [batch.tag for batch in batches if summaries[batch.tag].reaches_back(batch)]
    if reaching:
        stored: dict[str, list[bytes]] = {tag: [] for tag in reaching}
        for tag, data in connection.execute(
            select(ScalarSummaryBlock.tag, ScalarSummaryBlock.data)
            .where(
                ScalarSummaryBlock.session_id == session.id,
                ScalarSummaryBlock.tag.in_(reaching),
            )
            .order_by(ScalarSummaryBlock.tag, ScalarSummaryBlock.block)
        ):
            stored[tag].append(data)
        for tag, datas in stored.items():
            summaries[tag].with_blocks(datas)
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    blocks: list[dict[str, Any]] = []
    rewritten: list[str] = []
    to_merge: list[str] = []
    for batch in batches:
        row = existing.get(batch.tag)
        summary = summaries[batch.tag]
        summary.add(batch)
        small = (row._mapping["small_chunks"] if row is not None else 0) + (
            1 if batch.steps.size < SMALL_CHUNK else 0
        )
        values = {"session_id": session.id, "tag": batch.tag, "small_chunks": small}
        values.update(summary.columns())
        (updates if row is not None else inserts).append(values)
        stored_blocks = row._mapping["summary_blocks"] if row is not None else 0
        if summary.rewritten and stored_blocks:
            rewritten.append(batch.tag)
        blocks.extend(
            {"session_id": session.id, "tag": batch.tag, "block": number, "data": data}
            for number, data in summary.blocks(stored_blocks).items()
        )
        if small >= MERGE_AFTER:
            to_merge.append(batch.tag)
    if rewritten:
        connection.execute(
            delete(ScalarSummaryBlock).where(
                ScalarSummaryBlock.session_id == session.id,
                ScalarSummaryBlock.tag.in_(rewritten),
            )
        )
    if blocks:
        connection.execute(insert(ScalarSummaryBlock), blocks)
    if inserts:
        connection.execute(insert(ScalarSeries), inserts)
    if updates:
        table = ScalarSeries.__table__
        connection.execute(
            table.update().where(
                (table.c.session_id == bindparam("key_session"))
                & (table.c.tag == bindparam("key_tag"))
            ),
            [{**u, "key_session": u["session_id"], "key_tag": u["tag"]} for u in updates],
        )
    for tag in to_merge:
        _merge_small_chunks(session.id, tag)
    db.session.commit()
    return sum(int(batch.steps.size) for batch in batches)


def _bucket_rows(batch: Batch, width: int, origin: int) -> np.ndarray:
    """The batch's points as summary rows, one per bucket of `width` steps from
    `origin`."""
    keys = (batch.steps - origin) // width
    starts, ends = _runs(keys)
    rows = np.empty((starts.size, WIDTH))
    rows[:, N] = ends - starts
    rows[:, FIRST_STEP] = batch.steps[starts]
    rows[:, LAST_STEP] = batch.steps[ends - 1]
    minimum = np.minimum.reduceat(batch.values, starts)
    maximum = np.maximum.reduceat(batch.values, starts)
    rows[:, MIN] = minimum
    rows[:, MAX] = maximum
    # The step of each bucket's first minimum and maximum.
    bucket_of = np.repeat(np.arange(starts.size), ends - starts)
    is_min = batch.values == minimum[bucket_of]
    is_max = batch.values == maximum[bucket_of]
    rows[:, MIN_STEP] = batch.steps[_first_true(is_min, starts, ends)]
    rows[:, MAX_STEP] = batch.steps[_first_true(is_max, starts, ends)]
    rows[:, LAST] = batch.values[ends - 1]
    rows[:, FIRST_WALL] = batch.walls[starts]
    rows[:, LAST_WALL] = batch.walls[ends - 1]
    return rows


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each run of equal keys starts and ends (sorted keys: each key's rows)."""
    starts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate((np.zeros(1, dtype=starts.dtype), starts))
    ends = np.append(starts[1:], keys.size)
    return starts, ends


def _first_true(flags: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    positions = np.where(flags, np.arange(flags.size), flags.size)
    return np.minimum.reduceat(positions, starts).clip(max=ends - 1)


def _combine(rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Summary rows (sorted by key, then step) merged into one per key."""
    starts, ends = _runs(keys)
    out = np.empty((starts.size, WIDTH))
    out[:, N] = np.add.reduceat(rows[:, N], starts)
    out[:, FIRST_STEP] = np.minimum.reduceat(rows[:, FIRST_STEP], starts)
    out[:, LAST_STEP] = np.maximum.reduceat(rows[:, LAST_STEP], starts)
    out[:, MIN] = np.minimum.reduceat(rows[:, MIN], starts)
    out[:, MAX] = np.maximum.reduceat(rows[:, MAX], starts)
    bucket_of = np.repeat(np.arange(starts.size), ends - starts)
    out[:, MIN_STEP] = rows[
        _first_true(rows[:, MIN] == out[bucket_of, MIN], starts, ends), MIN_STEP
    ]
    out[:, MAX_STEP] = rows[
        _first_true(rows[:, MAX] == out[bucket_of, MAX], starts, ends), MAX_STEP
    ]
    # The last by step (ties: the later row, as reported later).
    last = np.lexsort((np.arange(keys.size), rows[:, LAST_STEP], keys))
    last_rows = rows[last]
    out[:, LAST] = last_rows[ends - 1, LAST]
    out[:, LAST_WALL] = np.maximum.reduceat(rows[:, LAST_WALL], starts)
    out[:, FIRST_WALL] = np.minimum.reduceat(rows[:, FIRST_WALL], starts)
    return out


def _width_for(first_step: int, last_step: int, width: int) -> int:
    """The bucket width (a power of two, never narrower than `width`) that spans the
    steps in at most BUCKETS buckets."""
    while (last_step - first_step) // width >= BUCKETS:
        width *= 2
    return width


@dataclass
class Summary:
    """A series' totals and its summary of at most BUCKETS buckets of `bucket_width`
    steps each, counted from `first_step` (the width doubles as the series grows).

    `rows` holds the summary from row `offset` on: all of it (offset 0), or only the
    tail a stored series keeps in its own row, the full blocks before it left unread.
    `rewritten` says that rows before the tail changed: every block is written anew."""

    count: int = 0
    first_step: int = 0
    last_step: int = 0
    last_value: float = 0.0
    first_wall: float = 0.0
    last_wall: float = 0.0
    min_value: float = 0.0
    max_value: float = 0.0
    bucket_width: int = 1
    rows: np.ndarray = field(default_factory=lambda: np.empty((0, WIDTH)))
    offset: int = 0
    rewritten: bool = False

    @classmethod
    def empty(cls) -> Summary:
        return cls()

    @classmethod
    def from_row(cls, row: Any) -> Summary:
        """The series as stored, its summary's tail only (see `load_blocks`)."""
        # By key: "count" is also a method of a row.
        values = row._mapping
        if not values["count"]:
            return cls()
        return cls(
            **{name: values[name] for name in SERIES_COLUMNS},
            rows=_rows(values["summary_tail"]),
            offset=values["summary_blocks"] * BLOCK_ROWS,
        )

    def reaches_back(self, batch: Batch) -> bool:
        """Whether adding `batch` changes rows before the tail: it widens the buckets,
        or has a step before the tail's first bucket."""
        if self.offset == 0:
            return False
        first = int(batch.steps[0])
        if first < self.first_step:
            return True
        last = max(self.last_step, int(batch.steps[-1]))
        if _width_for(self.first_step, last, self.bucket_width) != self.bucket_width:
            return True
        tail_first = int(self.rows[0, FIRST_STEP])
        width = self.bucket_width
        return (first - self.first_step) // width < (tail_first - self.first_step) // width

    def with_blocks(self, blocks: list[bytes]) -> None:
        """Complete the summary with the blocks stored before its tail."""
        self.rows = np.vstack([*(_rows(data) for data in blocks), self.rows])
        self.offset = 0

    def columns(self) -> dict[str, Any]:
        """The series row's columns, but for its blocks (see `blocks`)."""
        total = self.offset + len(self.rows)
        full = max(total - 1, 0) // BLOCK_ROWS  # the tail keeps at least the last row
        return {
            **{name: getattr(self, name) for name in SERIES_COLUMNS},
            "summary_blocks": full,
            "summary_tail": self.rows[full * BLOCK_ROWS - self.offset :].astype("<f8").tobytes(),
        }

    def blocks(self, stored: int) -> dict[int, bytes]:
        """The full blocks to write, by number: those after the `stored` ones, or all of
        them when rows before the tail were rewritten."""
        total = self.offset + len(self.rows)
        full = max(total - 1, 0) // BLOCK_ROWS
        first = 0 if self.rewritten else stored
        return {
            number: self.rows[
                number * BLOCK_ROWS - self.offset : (number + 1) * BLOCK_ROWS - self.offset
            ]
            .astype("<f8")
            .tobytes()
            for number in range(first, full)
        }

    def add(self, batch: Batch) -> None:
        """Add a batch's points (after `with_blocks` where `reaches_back` said so)."""
        first = int(batch.steps[0])
        grid_start = self.first_step
        if self.count == 0:
            self.first_step, self.first_wall = first, float(batch.walls[0])
            self.min_value = float(batch.values.min())
            self.max_value = float(batch.values.max())
        else:
            self.min_value = min(self.min_value, float(batch.values.min()))
            self.max_value = max(self.max_value, float(batch.values.max()))
            if first < self.first_step:  # a step before the first: the grid starts there
                self.first_step = first
            self.first_wall = min(self.first_wall, float(batch.walls[0]))
        # The last point: the highest step, and of equal ones the last reported.
        last_index = int(batch.steps.size - 1)
        if self.count == 0 or int(batch.steps[-1]) >= self.last_step:
            self.last_step = int(batch.steps[-1])
            self.last_value = float(batch.values[last_index])
            self.last_wall = float(batch.walls[last_index])
        self.count += int(batch.steps.size)
        width = _width_for(self.first_step, self.last_step, self.bucket_width)
        added = _bucket_rows(batch, width, self.first_step)
        grid_kept = width == self.bucket_width and first >= grid_start
        if grid_kept and len(self.rows) and added[0, FIRST_STEP] >= self.rows[-1, FIRST_STEP]:
            # The common case, steps that go on: only the last bucket can take more.
            last = self.rows[-1]
            if (int(last[FIRST_STEP]) - self.first_step) // width == (
                int(added[0, FIRST_STEP]) - self.first_step
            ) // width:
                added[0] = _combine_pair(last, added[0])
                self.rows = np.vstack([self.rows[:-1], added])
            else:
                self.rows = np.vstack([self.rows, added])
            return
        # Rows before the tail change only where `reaches_back` had the blocks read.
        if self.offset and not grid_kept:
            raise ValueError("the summary's blocks are needed: see reaches_back")
        rows = np.vstack([self.rows, added])
        self.rewritten = self.rewritten or self.offset == 0
        keys = (rows[:, FIRST_STEP].astype(np.int64) - self.first_step) // width
        order = np.lexsort((rows[:, FIRST_STEP], keys))
        self.bucket_width = width
        self.rows = _combine(rows[order], keys[order])


def _combine_pair(earlier: np.ndarray, later: np.ndarray) -> list[float]:
    """Two summary rows of one bucket as one (`_combine` for two rows in step order, in
    plain Python: a batch that goes on does this once per series)."""
    a, b = earlier.tolist(), later.tolist()
    row = list(a)
    row[N] = a[N] + b[N]
    row[FIRST_STEP] = min(a[FIRST_STEP], b[FIRST_STEP])
    row[LAST_STEP] = max(a[LAST_STEP], b[LAST_STEP])
    if b[MIN] < a[MIN]:
        row[MIN], row[MIN_STEP] = b[MIN], b[MIN_STEP]
    if b[MAX] > a[MAX]:
        row[MAX], row[MAX_STEP] = b[MAX], b[MAX_STEP]
    if b[LAST_STEP] >= a[LAST_STEP]:
        row[LAST] = b[LAST]
    row[FIRST_WALL] = min(a[FIRST_WALL], b[FIRST_WALL])
    row[LAST_WALL] = max(a[LAST_WALL], b[LAST_WALL])
    return row


def _rows(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f8").reshape(-1, WIDTH)


SERIES_COLUMNS = (
    "count",
    "first_step",
    "last_step",
    "last_value",
    "first_wall",
    "last_wall",
    "min_value",
    "max_value",
    "bucket_width",
)
SERIES_ROW_COLUMNS = (*SERIES_COLUMNS, "small_chunks", "summary_blocks", "summary_tail")


def _merge_small_chunks(session_id: int, tag: str) -> None:
    chunks = list(
        db.session.execute(
            select(ScalarChunk.id, ScalarChunk.count, ScalarChunk.data)
            .where(
                ScalarChunk.session_id == session_id,
                ScalarChunk.tag == tag,
                ScalarChunk.count < SMALL_CHUNK,
            )
            .order_by(ScalarChunk.id)
        )
    )
    small = len(chunks)
    if len(chunks) >= 2:
        parts = [_unpack(data, count) for _, count, data in chunks]
        steps = np.concatenate([p[0] for p in parts])
        order = np.argsort(steps, kind="stable")
        values = np.concatenate([p[1] for p in parts])[order]
        walls = np.concatenate([p[2] for p in parts])[order]
        steps = steps[order]
        db.session.execute(delete(ScalarChunk).where(ScalarChunk.id.in_([c[0] for c in chunks])))
        db.session.execute(
            insert(ScalarChunk),
            [
                {
                    "session_id": session_id,
                    "tag": tag,
                    "first_step": int(steps[0]),
                    "last_step": int(steps[-1]),
                    "count": int(steps.size),
                    "data": _pack(steps, values, walls),
                }
            ],
        )
        small = 1 if steps.size < SMALL_CHUNK else 0
    db.session.execute(
        update(ScalarSeries)
        .where(ScalarSeries.session_id == session_id, ScalarSeries.tag == tag)
        .values(small_chunks=small)
    )


# Reading -----------------------------------------------------------------------------


def _reported(tag_column) -> Any:
    """The session's own tags, not the platform's."""
    return ~tag_column.startswith(RESERVED, autoescape=True)


def series_of(session: Session) -> list[ScalarSeries]:
    return list(
        db.session.scalars(
            select(ScalarSeries)
            .where(ScalarSeries.session_id == session.id, _reported(ScalarSeries.tag))
            .order_by(ScalarSeries.tag)
        )
    )


def series_named(session_ids: list[int], tag: str) -> list[ScalarSeries]:
    """The series of `tag` of each of these sessions that reported it, in one query."""
    return list(
        db.session.scalars(
            select(ScalarSeries).where(
                ScalarSeries.session_id.in_(session_ids), ScalarSeries.tag == tag
            )
        )
    )


def tags(session: Session, *, reserved: bool = False) -> list[str]:
    """The session's tags; with `reserved`, the platform's tags of it instead."""
    mine = ScalarSeries.tag.startswith(RESERVED, autoescape=True)
    return list(
        db.session.scalars(
            select(ScalarSeries.tag)
            .where(ScalarSeries.session_id == session.id, mine if reserved else ~mine)
            .order_by(ScalarSeries.tag)
        )
    )


def raw(
    session: Session,
    tag: str,
    start: int | None = None,
    end: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every point of a series (within [start, end] when given), sorted by step."""
    return _raw(session.id, tag, start, end)


def _raw(
    session_id: int, tag: str, start: int | None, end: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    query = select(ScalarChunk.count, ScalarChunk.data).where(
        ScalarChunk.session_id == session_id, ScalarChunk.tag == tag
    )
    if start is not None:
        query = query.where(ScalarChunk.last_step >= start)
    if end is not None:
        query = query.where(ScalarChunk.first_step <= end)
    parts = [
        _unpack(data, count) for count, data in db.session.execute(query.order_by(ScalarChunk.id))
    ]
    if not parts:
        empty = np.empty(0)
        return empty.astype(np.int64), empty, empty
    steps = np.concatenate([p[0] for p in parts])
    order = np.argsort(steps, kind="stable")
    steps, values, walls = (
        steps[order],
        np.concatenate([p[1] for p in parts])[order],
        np.concatenate([p[2] for p in parts])[order],
    )
    keep = np.ones(steps.size, dtype=bool)
    if start is not None:
        keep &= steps >= start
    if end is not None:
        keep &= steps <= end
    return steps[keep], values[keep], walls[keep]


def columns(
    session: Session, tag: str, start: int | None = None, end: int | None = None
) -> dict[str, list] | None:
    """Every point of a series (within [start, end]) as columns; None: no such series."""
    exists = db.session.scalar(
        select(ScalarSeries.count).where(
            ScalarSeries.session_id == session.id, ScalarSeries.tag == tag
        )
    )
    if exists is None:
        return None
    steps, values, walls = raw(session, tag, start, end)
    return {"step": steps.tolist(), "value": values.tolist(), "wall_time": walls.tolist()}


def values_at(session_id: int, step: int) -> dict[str, float]:
    """Each tag's value at `step` (the last reported there), for the tags that have one."""
    found = {}
    for tag, count, data in db.session.execute(
        select(ScalarChunk.tag, ScalarChunk.count, ScalarChunk.data)
        .where(
            ScalarChunk.session_id == session_id,
            ScalarChunk.first_step <= step,
            ScalarChunk.last_step >= step,
            _reported(ScalarChunk.tag),
        )
        .order_by(ScalarChunk.id)
    ):
        steps, values, _ = _unpack(data, count)
        at = np.flatnonzero(steps == step)
        if at.size:
            found[tag] = float(values[at[-1]])
    return dict(sorted(found.items()))


def series_dict(series: ScalarSeries) -> dict[str, Any]:
    return {
        "tag": series.tag,
        "count": series.count,
        "first_step": series.first_step,
        "last_step": series.last_step,
        "last_value": series.last_value,
        "min_value": series.min_value,
        "max_value": series.max_value,
        "last_wall_time": series.last_wall,
    }


def after(session: Session, cursor: int, tag: str | None = None, limit: int = 100_000):
    """Points stored after `cursor` (a chunk id), as rows, and the cursor to ask with
    next: what a client following a session reads."""
    query = select(ScalarChunk.id, ScalarChunk.tag, ScalarChunk.count, ScalarChunk.data).where(
        ScalarChunk.session_id == session.id, ScalarChunk.id > cursor, _reported(ScalarChunk.tag)
    )
    if tag:
        query = query.where(ScalarChunk.tag == tag)
    rows: list[dict[str, Any]] = []
    last = cursor
    for chunk_id, chunk_tag, count, data in db.session.execute(query.order_by(ScalarChunk.id)):
        if rows and len(rows) + count > limit:
            break
        steps, values, walls = _unpack(data, count)
        rows.extend(
            {"tag": chunk_tag, "step": s, "value": v, "wall_time": w}
            for s, v, w in zip(steps.tolist(), values.tolist(), walls.tolist(), strict=True)
        )
        last = chunk_id
    return rows, last


def cursor_now(session: Session) -> int:
    """The newest chunk's id: points stored later come after it."""
    return int(
        db.session.scalar(
            select(func.max(ScalarChunk.id)).where(ScalarChunk.session_id == session.id)
        )
        or 0
    )


def new_points(
    session: Session, cursor: int, limit: int = 5000
) -> tuple[dict[str, dict[str, list]], int, bool]:
    """What an open page lacks: the points stored after `cursor`, as columns per tag, the
    cursor to ask with next, and False when there were more than `limit` (the page then
    loads its downsampled lines again rather than millions of points)."""
    rows = db.session.execute(
        select(ScalarChunk.id, ScalarChunk.tag, ScalarChunk.count, ScalarChunk.data)
        .where(
            ScalarChunk.session_id == session.id,
            ScalarChunk.id > cursor,
            _reported(ScalarChunk.tag),
        )
        .order_by(ScalarChunk.id)
    ).all()
    if sum(count for _, _, count, _ in rows) > limit:
        return {}, rows[-1][0], False
    columns: dict[str, dict[str, list]] = {}
    for _chunk_id, tag, count, data in rows:
        steps, values, _ = _unpack(data, count)
        column = columns.setdefault(tag, {"step": [], "value": []})
        column["step"].extend(steps.tolist())
        column["value"].extend(values.tolist())
    return columns, (rows[-1][0] if rows else cursor), True


def downsample(
    steps: np.ndarray, values: np.ndarray, walls: np.ndarray, points: int
) -> dict[str, list]:
    """At most about twice `points` points: per bucket of steps, its minimum and its
    maximum (in step order); the last point exact."""
    if steps.size <= 2 * points:
        return {"step": steps.tolist(), "value": values.tolist(), "wall_time": walls.tolist()}
    edges = np.linspace(steps[0], steps[-1], points + 1)
    keys = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, points - 1)
    starts, ends = _runs(keys)
    bucket_of = np.repeat(np.arange(starts.size), ends - starts)
    minimum = np.minimum.reduceat(values, starts)
    maximum = np.maximum.reduceat(values, starts)
    low = _first_true(values == minimum[bucket_of], starts, ends)
    high = _first_true(values == maximum[bucket_of], starts, ends)
    chosen = np.unique(np.r_[low, high, steps.size - 1])
    return {
        "step": steps[chosen].tolist(),
        "value": values[chosen].tolist(),
        "wall_time": walls[chosen].tolist(),
    }


def summary_rows(series: ScalarSeries) -> np.ndarray:
    """The series' whole summary: its stored blocks, then its tail."""
    return summaries([series])[series.session_id]


def summaries(found: list[ScalarSeries]) -> dict[int, np.ndarray]:
    """The whole summaries of these series of one tag, by session id, in one query."""
    if not found:
        return {}
    blocks: dict[int, list[bytes]] = {series.session_id: [] for series in found}
    for session_id, data in db.session.execute(
        select(ScalarSummaryBlock.session_id, ScalarSummaryBlock.data)
        .where(
            ScalarSummaryBlock.session_id.in_(list(blocks)),
            ScalarSummaryBlock.tag == found[0].tag,
        )
        .order_by(ScalarSummaryBlock.session_id, ScalarSummaryBlock.block)
    ):
        blocks[session_id].append(data)
    return {
        series.session_id: np.vstack(
            [*(_rows(data) for data in blocks[series.session_id]), _rows(series.summary_tail)]
        )
        for series in found
    }


def summary_line(series: ScalarSeries, rows: np.ndarray, points: int) -> dict[str, list]:
    """A plot line of the whole series from its summary `rows` (no chunk is read)."""
    if len(rows) > points:
        keys = np.minimum((np.arange(len(rows)) * points) // len(rows), points - 1)
        rows = _combine(rows, keys)
    # Each bucket: its minimum and maximum, in step order; then the exact last point.
    steps = np.r_[rows[:, MIN_STEP], rows[:, MAX_STEP], series.last_step]
    values = np.r_[rows[:, MIN], rows[:, MAX], series.last_value]
    walls = np.r_[rows[:, FIRST_WALL], rows[:, LAST_WALL], series.last_wall]
    steps, first = np.unique(steps, return_index=True)
    return {
        "step": steps.astype(np.int64).tolist(),
        "value": values[first].tolist(),
        "wall_time": walls[first].tolist(),
    }


def line(
    session: Session,
    tag: str,
    points: int = 1000,
    start: int | None = None,
    end: int | None = None,
) -> dict[str, Any] | None:
    """A plot line of a series, downsampled to about `points` buckets: from the summary
    for the whole series, from the chunks for a range; with the series' first wall time.
    None: no such series."""
    return lines([session.id], tag, points, start, end).get(session.id)


def lines(
    session_ids: list[int],
    tag: str,
    points: int = 1000,
    start: int | None = None,
    end: int | None = None,
) -> dict[int, dict[str, Any]]:
    """`line` of `tag` for each of these sessions that reported it, by session id: the
    series and the summaries' blocks in one query each."""
    found_series = series_named(session_ids, tag)
    summarised = {
        series.session_id
        for series in found_series
        if (start is None or start <= series.first_step)
        and (end is None or end >= series.last_step)
        and series.count > 2 * points
    }
    rows = summaries([series for series in found_series if series.session_id in summarised])
    found = {}
    for series in found_series:
        if series.session_id in summarised:
            drawn = summary_line(series, rows[series.session_id], points)
        else:
            drawn = downsample(*_raw(series.session_id, tag, start, end), points)
        # Times on a plot count from the series' first point, whatever range is shown.
        found[series.session_id] = {**drawn, "first_wall_time": series.first_wall}
    return found


def remove(session_id: int) -> None:
    db.session.execute(delete(ScalarChunk).where(ScalarChunk.session_id == session_id))
    db.session.execute(
        delete(ScalarSummaryBlock).where(ScalarSummaryBlock.session_id == session_id)
    )
    db.session.execute(delete(ScalarSeries).where(ScalarSeries.session_id == session_id))
