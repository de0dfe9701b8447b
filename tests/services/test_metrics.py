"""The scalar store: what goes in comes back, once, and plots stay small and true."""

import numpy as np
import pytest
from sqlalchemy import event

from portal.extensions import db
from portal.models import ScalarChunk, ScalarSeries, ScalarSummaryBlock
from portal.services import metrics
from tests import factories


def columns(tag_values: dict[str, list[tuple[int, float]]], wall: float = 1.0) -> dict:
    return {
        "scalars": {
            tag: {
                "step": [s for s, _ in points],
                "value": [v for _, v in points],
                "wall_time": [wall + i for i, _ in enumerate(points)],
            }
            for tag, points in tag_values.items()
        }
    }


@pytest.fixture
def run(app):
    return factories.session(factories.user("ada"))


def test_every_point_comes_back_in_step_order_and_chunks_are_merged(run):
    rng = np.random.default_rng(0)
    expected = {}
    for batch in range(80):  # more small batches than MERGE_AFTER
        steps = list(range(batch * 50, batch * 50 + 50))
        values = rng.normal(size=50).tolist()
        expected.update(zip(steps, values, strict=True))
        body = columns({"loss": list(zip(steps, values, strict=True))})
        assert metrics.record(run, {**body, "stream": "s", "seq": batch}) == 50
    steps, values, _ = metrics.raw(run, "loss")
    assert steps.tolist() == sorted(expected)
    assert values.tolist() == [expected[s] for s in sorted(expected)]
    chunks = db.session.query(ScalarChunk).filter_by(tag="loss").count()
    assert chunks <= metrics.MERGE_AFTER  # merged as they came: never more small ones
    series = db.session.get(ScalarSeries, (run.id, "loss"))
    assert series.count == 4000 and series.last_step == 3999
    assert series.last_value == expected[3999]
    assert series.min_value == min(expected.values())


def test_a_retried_batch_is_stored_once(run):
    body = {**columns({"acc": [(1, 0.5), (2, 0.6)]}), "stream": "p1", "seq": 7}
    assert metrics.record(run, body) == 2
    assert metrics.record(run, body) == 0  # the answer was lost; the SDK sent it again
    assert metrics.record(run, {**body, "seq": 6}) == 0
    assert metrics.record(run, {**body, "seq": 8}) == 2
    # Another process of the session (a resumed run) numbers from the start again.
    assert metrics.record(run, {**body, "stream": "p2", "seq": 0}) == 2
    assert metrics.raw(run, "acc")[0].size == 6


def test_rows_and_columns_are_one_store(run):
    metrics.record(run, {"events": [{"tag": "a", "step": 3, "value": 1.5, "wall_time": 9.0}]})
    metrics.record(run, columns({"a": [(1, 0.5)]}))
    rows, cursor = metrics.after(run, 0)
    assert [(r["step"], r["value"]) for r in rows] == [(3, 1.5), (1, 0.5)]  # arrival order
    assert metrics.after(run, cursor) == ([], cursor)
    assert metrics.tags(run) == ["a"]


def test_a_plot_line_is_small_keeps_the_extremes_and_ends_exactly(run):
    steps = np.arange(100_000)
    values = np.sin(steps / 5000.0) + (steps % 997 == 0) * 5.0  # spikes must survive
    for start in range(0, 100_000, 10_000):
        part = slice(start, start + 10_000)
        metrics.record(
            run,
            columns({"loss": list(zip(steps[part].tolist(), values[part].tolist(), strict=True))}),
        )
    line = metrics.line(run, "loss", points=500)
    assert len(line["step"]) <= 2 * 500 + 1
    assert line["step"][-1] == 99_999 and line["value"][-1] == values[-1]
    assert max(line["value"]) == values.max() and min(line["value"]) == values.min()
    assert line["step"] == sorted(line["step"])
    zoomed = metrics.line(run, "loss", points=100, start=20_000, end=20_150)
    assert zoomed["step"] == list(range(20_000, 20_151))  # fewer than twice the points: all
    assert metrics.line(run, "nothing") is None


def test_a_summary_kept_in_blocks_is_the_summary_of_all_points(run):
    """Batches out of order, reaching back before the tail, and far ahead (the buckets
    widen): what is stored, blocks and tail, is the summary of every point at once. (The
    first step comes first: the buckets are counted from it.)"""
    rng = np.random.default_rng(7)
    steps = rng.permutation(np.r_[np.arange(5_000, 25_000), np.arange(1, 300)])
    parts = [np.array([0])] + [np.sort(steps[i : i + n]) for i, n in _cuts(len(steps), rng)]
    steps = np.r_[0, steps]
    parts.append(np.array([40_000, 40_001]))  # far ahead: the buckets widen
    parts.append(np.arange(1_000, 1_100))  # back before the tail
    values = {int(s): float(v) for s, v in zip(steps, rng.normal(size=len(steps)), strict=True)}
    values.update({40_000: 3.0, 40_001: -3.0})
    values.update({s: float(s) for s in range(1_000, 1_100)})
    for part in parts:
        metrics.record(run, columns({"loss": [(int(s), values[int(s)]) for s in part]}))
    everything = np.array(sorted(values))
    whole = metrics.Summary()
    whole.add(
        metrics.Batch(
            "loss",
            everything,
            np.array([values[s] for s in everything.tolist()]),
            np.ones(everything.size),
        )
    )
    series = db.session.get(ScalarSeries, (run.id, "loss"))
    stored = metrics.summary_rows(series)
    walls = [metrics.FIRST_WALL, metrics.LAST_WALL]
    np.testing.assert_array_equal(np.delete(stored, walls, 1), np.delete(whole.rows, walls, 1))
    assert series.summary_blocks == (len(whole.rows) - 1) // metrics.BLOCK_ROWS > 0


def _cuts(total: int, rng) -> list[tuple[int, int]]:
    cuts, at = [], 0
    while at < total:
        size = int(rng.integers(1, 3_000))
        cuts.append((at, size))
        at += size
    return cuts


def test_a_batch_that_goes_on_rewrites_only_the_summary_tail(run):
    for first in range(0, 50_000, 1_000):
        metrics.record(run, columns({"loss": [(s, s * 0.1) for s in range(first, first + 1_000)]}))
    written: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        written.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        metrics.record(run, columns({"loss": [(s, 1.0) for s in range(50_000, 50_100)]}))
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    # The summary bytes written (a driver may wrap them: psycopg's Binary holds `obj`).
    blobs = [
        len(bytes(getattr(value, "obj", value)))
        for statement, parameters in written
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        and "scalar_chunks" not in statement
        for row in (parameters if isinstance(parameters, list) else [parameters])
        for value in (row.values() if isinstance(row, dict) else row)
        if isinstance(getattr(value, "obj", value), bytes | memoryview)
    ]
    assert db.session.query(ScalarSummaryBlock).count() > 1
    assert blobs and sum(blobs) <= metrics.BLOCK_ROWS * metrics.WIDTH * 8
    assert not any("DELETE FROM scalar_summary_blocks" in s for s, _ in written)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"scalars": {"x": {"step": [1], "value": [float("nan")], "wall_time": [1.0]}}}, "finite"),
        ({"scalars": {"x": {"step": [1, 2], "value": [1.0], "wall_time": [1.0]}}}, "differ"),
        ({"scalars": {"x": {"step": ["a"], "value": [1.0], "wall_time": [1.0]}}}, "integers"),
        ({"scalars": {"x" * 200: {"step": [1], "value": [1.0], "wall_time": [1.0]}}}, "tag"),
        ({"events": [{"tag": "x", "step": 1}]}, "needs tag, step, value and wall_time"),
        ({"scalars": [1, 2]}, "map tags"),
    ],
)
def test_bad_points_are_refused_and_nothing_is_stored(run, body, message):
    with pytest.raises(metrics.InvalidScalars, match=message):
        metrics.record(run, body)
    assert db.session.query(ScalarChunk).count() == 0


def test_an_open_page_gets_only_what_is_new(run):
    metrics.record(run, columns({"loss": [(1, 0.5), (2, 0.4)]}))
    cursor = metrics.cursor_now(run)
    assert metrics.new_points(run, cursor) == ({}, cursor, True)
    metrics.record(run, columns({"loss": [(3, 0.3)], "acc": [(3, 0.9)]}))
    points, after, complete = metrics.new_points(run, cursor)
    assert complete and after > cursor
    assert points == {"loss": {"step": [3], "value": [0.3]}, "acc": {"step": [3], "value": [0.9]}}
    metrics.record(run, columns({"loss": [(s, 0.1) for s in range(4, 100)]}))
    points, latest, complete = metrics.new_points(run, after, limit=50)
    assert (points, complete) == ({}, False)  # too many: the page loads its plot anew
    assert latest == metrics.cursor_now(run)
