"""Rules that have one home stay there."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    path
    for folder in ("portal", "grader", "scheduler", "nodes", "cli")
    for path in (ROOT / folder).rglob("*.py")
]


def test_redis_keys_are_named_only_in_portal_keys():
    """A key, channel or pattern written anywhere else would escape the one list."""
    key = re.compile(r"""["']podium:[a-z{*]""")
    strays = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in SOURCES
        if path != ROOT / "portal" / "keys.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if key.search(line)
    ]
    assert strays == []


def test_the_session_lifecycle_reaches_no_submission_path():
    """Ending a grading session calls `competitions.grading`, imported with the lifecycle
    itself (no import inside a function to dodge a cycle), and grading never imports the
    sessions service back (the old cycle sessions -> nodes -> lifecycle -> submissions ->
    sessions)."""
    code = (
        "import sys, portal.services.lifecycle as l;"
        "print(l.grading.__name__, 'portal.services.sessions' in sys.modules,"
        " 'portal.services.competitions.submissions' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["portal.services.competitions.grading", "False", "False"]


def test_the_error_envelope_is_parsed_in_one_place():
    parsers = [
        str(path.relative_to(ROOT))
        for path in SOURCES
        if '["error"]["message"]' in path.read_text() or "['error']['message']" in path.read_text()
    ]
    assert parsers == []
    tree = ast.parse((ROOT / "cli" / "envelope.py").read_text())
    assert {"refusal", "error_message"} <= {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef)
    }
