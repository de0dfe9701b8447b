"""The load run of bench/load.py in a short form: browsers, submitters and reporting
sessions at once against the whole stack, with no error, and every submission graded
exactly once (the full run is the script's default: 270 users for five minutes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load(*options: str) -> dict:
    """bench/load.py's result, with 10 browsers, 3 submitters and 5 reporting sessions."""
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "load.py"),
            *("--browsers", "10", "--submitters", "3", "--reporters", "5", "--settle", "1"),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_a_short_load_run_has_no_error_and_grades_each_submission_once():
    result = load("--duration", "15")
    assert result["errors"] == 0, result["error_kinds"]
    assert result["requests"] > 100
    accepted = result["submissions_accepted"]
    assert accepted > 20
    grading = result["grading"]
    assert grading["statuses"] == {"scored": accepted}
    assert grading["graded_exactly_once"], grading
    # Every kind of caller was served.
    assert {"POST api submit", "POST api report", "GET api leaderboard"} <= set(result["routes"])


def test_portal_workers_killed_under_load_leave_no_half_written_row():
    result = load("--duration", "16", "--kill-worker-every", "4")
    assert result["portal_workers_killed"] >= 3
    # gunicorn replaced them: requests went on being served.
    assert result["requests"] > 100 and result["submissions_accepted"] > 20
    # What a killed worker held failed; what it committed is whole.
    integrity = result["integrity"]
    assert integrity["rows_without_their_file"] == []
    assert integrity["accepted_but_missing"] == []
    grading = result["grading"]
    assert set(grading["statuses"]) == {"scored"}, grading
    assert grading["graded_exactly_once"], grading
