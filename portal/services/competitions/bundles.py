"""Codabench and CodaLab competition bundles: a zip whose `competition.yaml` (Codabench's
`version: 2`, or CodaLab's 1.5) describes phases, tasks, pages and leaderboards, turned
into a Podium spec and its files, then created like any spec (`specs.create`), with a
report, line by line, of everything that could not be carried over.

- phases → rounds (name, start and end, daily and total submission limits, execution
  time limit); a phase without an end ends where the next starts;
- a phase's task: its reference data → the hidden labels, its input data → the test
  inputs (published when the bundle makes input data available), one data file each;
- the leaderboard's first column → the metric: a built-in one by its key or title
  (`accuracy`, `auc`, `rmse`, ...), its sorting → which way is better;
- the scoring program → a custom scorer, where it is one Python file of the standard
  library reading `input/ref` and `input/res` and writing `scores.json` or `scores.txt`
  (the classic layout): the generated scorer runs it unchanged inside the grader's
  sandbox, on each board's labels and predictions;
- pages and terms → the description; the rest (logo, Docker image, ingestion program,
  solutions, starting kits, extra columns, extra tasks) is reported.

The bundle is untrusted: members with absolute paths, `..`, links, or that expand
absurdly are refused, as is a file the YAML names that the bundle does not hold.
Nothing is created unless the whole bundle converts.
"""

from __future__ import annotations

import ast
import csv
import io
import posixpath
import re
import stat
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import yaml
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from portal.errors import ApiError, first_problem
from portal.models import Competition, User
from portal.services.artifacts import ArtifactStore
from portal.services.competitions import specs
from portal.services.competitions.core import CUSTOM, require_organiser_level
from portal.services.competitions.spec_schema import MAX_ROUNDS

MAX_BUNDLE_BYTES = 128 * 2**20
MAX_UNPACKED_BYTES = 256 * 2**20  # the bundle and every zip inside it, together
MAX_MEMBERS = 10_000
MAX_RATIO = 200  # unpacked to packed, per member: more is a zip bomb
LAST_PHASE_DAYS = 365  # a last phase without an end, nor the competition's

# Leaderboard column keys and titles that name a built-in metric.
METRIC_ALIASES = {
    "accuracy": "accuracy",
    "acc": "accuracy",
    "f1": "macro_f1",
    "macro_f1": "macro_f1",
    "f1_macro": "macro_f1",
    "macro_f1_score": "macro_f1",
    "auc": "roc_auc",
    "roc_auc": "roc_auc",
    "auroc": "roc_auc",
    "mse": "mse",
    "mean_squared_error": "mse",
    "rmse": "rmse",
    "root_mean_squared_error": "rmse",
    "mae": "mae",
    "mean_absolute_error": "mae",
    "log_loss": "log_loss",
    "logloss": "log_loss",
    "cross_entropy": "log_loss",
    "token_f1": "token_f1",
    "accuracy_within": "accuracy_within",
}
LOWER_IS_BETTER = {"mse", "rmse", "mae", "log_loss"}
PROGRAM_COMMAND = re.compile(
    r"^\s*python3?\s+\$program/(?P<script>[\w./-]+\.py)\s+(?P<first>\$input|\$output)"
    r"\s+(?P<second>\$input|\$output)\s*$"
)
ID_COLUMNS = ("id", "ID", "Id")
LABEL_COLUMNS = ("label", "target", "y", "class", "prediction", "value")

V2_TOP = {
    "version",
    "title",
    "description",
    "image",
    "terms",
    "pages",
    "phases",
    "tasks",
    "leaderboards",
    "make_input_data_available",
}
V15_TOP = {"title", "description", "image", "html", "phases", "leaderboard", "end_date"}


class BundleError(ApiError):
    def __init__(self, message: str):
        super().__init__(message, code="invalid_bundle", status=422)


@dataclass
class Converted:
    spec: dict[str, Any]
    files: dict[str, bytes]
    report: list[str] = field(default_factory=list)


# Reading the zip --------------------------------------------------------------------


class Budget:
    """What a bundle may unpack, the zips inside it included."""

    def __init__(self, limit: int = MAX_UNPACKED_BYTES):
        self.left = limit

    def take(self, size: int, what: str) -> None:
        self.left -= size
        if self.left < 0:
            raise BundleError(
                f"{what}: the bundle expands beyond {MAX_UNPACKED_BYTES // 2**20} MiB"
            )


def read_zip(data: bytes, what: str, budget: Budget | None = None) -> dict[str, bytes]:
    """The regular files of a zip by their path inside it; refused whole on a path that
    leaves it, a link, too many members, or an absurd expansion (of a member, or of the
    whole against its packed size)."""
    budget = budget or Budget()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise BundleError(f"{what} is not a zip file") from None
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise BundleError(f"{what} holds more than {MAX_MEMBERS} files")
    files: dict[str, bytes] = {}
    total = 0
    for info in members:
        name = info.filename
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or ".." in parts or re.match(r"^[A-Za-z]:", name):
            raise BundleError(f"{what} holds {name!r}, a path outside the bundle")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BundleError(f"{what} holds {name!r}, a link: bundles hold plain files only")
        if info.is_dir():
            continue
        total += info.file_size
        bomb = info.file_size > 2**16 and info.file_size > max(info.compress_size, 1) * MAX_RATIO
        if bomb or (total > 2**20 and total > len(data) * MAX_RATIO):
            raise BundleError(
                f"{what}: {name!r} would expand more than {MAX_RATIO} times: refused as a zip bomb"
            )
        budget.take(info.file_size, what)
        with archive.open(info) as member:
            body = member.read(info.file_size + 1)
        if len(body) != info.file_size:
            raise BundleError(f"{what}: {name!r} is not the size its header says")
        key = posixpath.normpath(name)
        if key.startswith("__MACOSX/") or posixpath.basename(key) == ".DS_Store":
            continue
        files[key] = body
    return files


def _root(files: dict[str, bytes]) -> str:
    """Its competition.yaml: at the bundle's top, or one folder down."""
    candidates = sorted(
        (k for k in files if posixpath.basename(k) in ("competition.yaml", "competition.yml")),
        key=lambda k: k.count("/"),
    )
    if not candidates or candidates[0].count("/") > 1:
        raise BundleError("the bundle holds no competition.yaml")
    return candidates[0]


class Bundle:
    def __init__(self, files: dict[str, bytes], budget: Budget):
        self.yaml = _root(files)
        self.root = posixpath.dirname(self.yaml)
        self.files = files
        self.budget = budget
        self._folders: dict[str, dict[str, bytes]] = {}

    def path(self, name: str) -> str:
        return posixpath.join(self.root, name) if self.root else name

    def named(self, name: Any, what: str) -> bytes:
        """A file the YAML names; refused when it leaves the bundle or is missing."""
        text = str(name).strip().lstrip("./") if isinstance(name, str) else ""
        if not text or posixpath.isabs(str(name)) or ".." in str(name).split("/"):
            raise BundleError(f"{what}: {name!r} is not a path inside the bundle")
        key = posixpath.normpath(self.path(text))
        if key not in self.files:
            raise BundleError(f"{what}: the bundle holds no {text!r}")
        return self.files[key]

    def folder(self, name: Any, what: str) -> dict[str, bytes]:
        """The files of a zip or a folder the YAML names (reference data, a program),
        by their path inside it."""
        text = str(name).strip().rstrip("/") if isinstance(name, str) else ""
        if text and not text.endswith(".zip"):
            prefix = posixpath.normpath(self.path(text.lstrip("./"))) + "/"
            if ".." in text.split("/") or posixpath.isabs(text):
                raise BundleError(f"{what}: {name!r} is not a path inside the bundle")
            inside = {k[len(prefix) :]: v for k, v in self.files.items() if k.startswith(prefix)}
            if inside:
                return inside
        if text not in self._folders:  # a zip several phases name is unpacked once
            self._folders[text] = read_zip(self.named(name, what), f"{what} ({name})", self.budget)
        return self._folders[text]


# Normalising both formats -----------------------------------------------------------


def _when(value: Any, what: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise BundleError(f"{what}: {value!r} is not a date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _normalise_v15(raw: dict[str, Any], report: list[str]) -> dict[str, Any]:
    """CodaLab 1.5's YAML in Codabench's shape: phases a list with their task inline,
    pages a list, the leaderboard's columns a list."""
    pages = [
        {"title": title, "file": file}
        for title, file in (raw.get("html") or {}).items()
        if title != "terms"
    ]
    terms = (raw.get("html") or {}).get("terms")
    phases = []
    task_keys = ("reference_data", "input_data", "scoring_program", "ingestion_program")
    for key, phase in sorted((raw.get("phases") or {}).items()):
        phase = dict(phase)
        task = {k: phase.pop(k) for k in task_keys}
        number = phase.pop("phasenumber")
        phases.append(
            {
                "index": key if number is None else number,
                "name": phase.pop("label") or f"Phase {key}",
                "start": phase.pop("start_date"),
                "description": phase.pop("description"),
                "max_submissions": phase.pop("max_submissions"),
                "max_submissions_per_day": phase.pop("max_submissions_per_day"),
                "execution_time_limit": phase.pop("execution_time_limit"),
                "_task": {k: v for k, v in task.items() if v},
                **{f"_unmapped_{k}": v for k, v in phase.items()},
            }
        )
    if raw.get("end_date") and phases:
        phases[-1]["end"] = raw["end_date"]
    columns = []
    for key, column in ((raw.get("leaderboard") or {}).get("columns") or {}).items():
        columns.append(
            {
                "key": key,
                "title": column.get("label") or key,
                "index": column.get("rank") or 0,
                "sorting": column.get("sort") or "desc",
            }
        )
    for key in sorted(set(map(str, raw)) - V15_TOP):
        report.append(f"{key}: not carried over (no Podium setting)")
    return {
        "title": raw.get("title"),
        "description": raw.get("description", ""),
        "image": raw.get("image"),
        "terms": terms,
        "pages": pages,
        "phases": phases,
        "leaderboards": [{"title": "Results", "columns": columns}] if columns else [],
    }


def _task_of(phase: dict[str, Any], tasks: dict[Any, dict], where: str, report: list[str]):
    if "_task" in phase:
        return phase["_task"]
    indexes = phase.get("tasks") or []
    if not indexes:
        raise BundleError(f"{where}: the phase names no task")
    if len(indexes) > 1:
        report.append(
            f"{where}: tasks {', '.join(map(str, indexes[1:]))} not carried over "
            "(a round grades one test set)"
        )
    if indexes[0] not in tasks:
        raise BundleError(f"{where}: it names task {indexes[0]!r}, which the bundle lacks")
    return tasks[indexes[0]]


# Data: labels and test inputs -------------------------------------------------------


def _data_file(folder: dict[str, bytes], what: str) -> tuple[str, bytes]:
    data = {
        k: v
        for k, v in folder.items()
        if not posixpath.basename(k).startswith(".")
        and posixpath.basename(k) not in ("metadata", "metadata.yaml")
    }
    if len(data) != 1:
        raise BundleError(
            f"{what} holds {len(data)} data files ({', '.join(sorted(data)[:5])}): a round "
            "takes one (labels or test inputs, one row per test example)"
        )
    return next(iter(data.items()))


def _decode(body: bytes, what: str) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BundleError(f"{what} is not UTF-8 text") from None


def _table(body: bytes, what: str) -> tuple[list[str], list[list[str]]] | None:
    """A CSV with an id column: its header and rows; None for a plain file of lines."""
    text = _decode(body, what)
    try:
        first = text.splitlines()[0] if text.strip() else ""
        header = next(csv.reader([first])) if first else []
        if not any(column.strip() in ID_COLUMNS for column in header):
            return None
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise BundleError(f"{what} is not a CSV file: {exc}") from None
    header, body_rows = [c.strip() for c in rows[0]], [r for r in rows[1:] if r]
    for number, row in enumerate(body_rows, start=2):
        if len(row) != len(header):
            raise BundleError(
                f"{what}: row {number} has {len(row)} cells and the header {len(header)}"
            )
    return header, body_rows


def _lines(body: bytes, what: str) -> list[str]:
    return [line.strip() for line in _decode(body, what).splitlines() if line.strip()]


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


@dataclass
class Labels:
    ids: list[str]
    csv: bytes
    file_name: str  # the reference file's own name, for the scoring program
    lines: bool  # a plain file of one label per line (ids are row numbers)


def _labels(folder: dict[str, bytes], what: str) -> Labels:
    name, body = _data_file(folder, what)
    table = _table(body, f"{what}: {name}")
    if table is None:
        values = _lines(body, f"{what}: {name}")
        if not values:
            raise BundleError(f"{what}: {name} holds no labels")
        ids = [str(i) for i in range(len(values))]
        return Labels(
            ids,
            _csv(["id", "label"], [[i, v] for i, v in zip(ids, values, strict=True)]),
            name,
            True,
        )
    header, rows = table
    id_at = next(i for i, c in enumerate(header) if c in ID_COLUMNS)
    others = [i for i in range(len(header)) if i != id_at]
    named = [i for i in others if header[i].lower() in LABEL_COLUMNS]
    if len(others) != 1 and len(named) != 1:
        raise BundleError(
            f"{what}: {name} has the columns {', '.join(header)}: labels are an id and one "
            f"column (or one named {', '.join(LABEL_COLUMNS)})"
        )
    label_at = named[0] if len(others) != 1 else others[0]
    ids = [r[id_at].strip() for r in rows]
    return Labels(ids, _csv(["id", "label"], [[r[id_at], r[label_at]] for r in rows]), name, False)


def _inputs(folder: dict[str, bytes] | None, labels: Labels, what: str) -> bytes:
    """The test inputs as a CSV with an `id` column, rows in the labels' order."""
    if folder is None:
        return _csv(["id"], [[i] for i in labels.ids])
    name, body = _data_file(folder, what)
    table = _table(body, f"{what}: {name}")
    if table is None:
        values = _lines(body, f"{what}: {name}")
        if len(values) != len(labels.ids):
            raise BundleError(
                f"{what}: {name} has {len(values)} rows and the reference data "
                f"{len(labels.ids)}: one row per test example in each"
            )
        if not labels.lines:
            raise BundleError(
                f"{what}: {name} has no id column, but the reference data has ids: give "
                "the inputs an `id` column too"
            )
        return _csv(["id", "input"], [[i, v] for i, v in zip(labels.ids, values, strict=True)])
    header, rows = table
    id_at = next(i for i, c in enumerate(header) if c in ID_COLUMNS)
    if [r[id_at].strip() for r in rows] != labels.ids:
        raise BundleError(f"{what}: {name}'s ids are not the reference data's, in the same order")
    header[id_at] = "id"
    return _csv(header, rows)


# The scoring program ----------------------------------------------------------------


def _metric_of(
    columns: list[dict[str, Any]], where: str, report: list[str]
) -> tuple[str | None, str | None, bool]:
    """The first column: its key, a built-in metric it names (or None), and whether
    higher is better."""
    if not columns:
        return None, None, True
    # Indexes are integers by now (`checked`, `_normalise_v15`).
    ordered = sorted(columns, key=lambda c: (c["index"], str(c.get("key"))))
    first = ordered[0]
    for other in ordered[1:]:
        report.append(
            f"{where}: column {other.get('key')!r} not carried over (a round ranks by one metric)"
        )
    if first.get("computation"):
        report.append(
            f"{where}: column {first.get('key')!r} is computed ({first['computation']}): "
            "ranked by the scoring program's value instead"
        )
    key = str(first.get("key") or first.get("title") or "")
    names = [key, str(first.get("title") or "")]
    builtin = next(
        (
            METRIC_ALIASES[n]
            for n in (re.sub(r"[^a-z0-9]+", "_", n.strip().lower()).strip("_") for n in names)
            if n in METRIC_ALIASES
        ),
        None,
    )
    higher = str(first.get("sorting", "desc")).lower() != "asc"
    return key, builtin, higher


def _program_refusal(folder: dict[str, bytes]) -> tuple[str, str] | str:
    """The scoring program's script name and source, or why it cannot run as a Podium
    scorer."""
    meta = folder.get("metadata") or folder.get("metadata.yaml")
    if meta is None:
        return "it has no metadata file naming its command"
    try:
        metadata = load_yaml(meta, "the scoring program's metadata")
    except BundleError:
        return "its metadata is not plain YAML"
    command = str(metadata.get("command", "")) if isinstance(metadata, dict) else ""
    match = PROGRAM_COMMAND.match(command)
    if match is None:
        return f"its command {command!r} is not `python $program/SCRIPT.py $input $output`"
    if (match["first"], match["second"]) != ("$input", "$output"):
        return "its command takes its output folder before its input"
    scripts = [k for k in folder if k.endswith(".py")]
    if scripts != [match["script"]]:
        return f"it is {len(scripts)} Python files: a Podium scorer is one file"
    source = _decode(folder[match["script"]], "the scoring program")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return f"its script does not parse: {exc.msg} (line {exc.lineno})"
    except (MemoryError, RecursionError, ValueError):
        return "its script nests too deeply to read"
    for node in ast.walk(tree):
        modules = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        for module in modules:
            top = module.split(".")[0]
            if isinstance(node, ast.ImportFrom) and node.level:
                return "it imports from its own package"
            if top not in sys.stdlib_module_names:
                return f"it imports {top} (a Podium scorer uses the standard library only)"
    return match["script"], source


ADAPTER = '''"""Podium's scorer for an imported bundle: runs the bundle's scoring program
{script!r} unchanged, in the layout it expects (input/ref, input/res, output), on one
board's labels and predictions, and returns its {key!r} score."""

import json
import os
import runpy
import sys
import tempfile

PROGRAM = {source!r}
REFERENCE = {reference!r}
PREDICTION = {prediction!r}
KEY = {key!r}


def score(labels, predictions):
    root = tempfile.mkdtemp()
    folders = [os.path.join(root, *p) for p in (("input", "ref"), ("input", "res"), ("output",))]
    for folder in folders:
        os.makedirs(folder)
    written = ((folders[0], REFERENCE, labels), (folders[1], PREDICTION, predictions))
    for folder, name, values in written:
        with open(os.path.join(folder, name), "w") as out:
            out.write("".join(str(v) + "\\n" for v in values))
    script = os.path.join(root, {script!r})
    with open(script, "w") as out:
        out.write(PROGRAM)
    sys.argv = [script, os.path.join(root, "input"), folders[2]]
    runpy.run_path(script, run_name="__main__")
    scores = os.path.join(folders[2], "scores.json")
    if os.path.exists(scores):
        with open(scores) as source:
            values = json.load(source)
    else:
        values = {{}}
        with open(os.path.join(folders[2], "scores.txt")) as source:
            for line in source:
                key, _, value = line.partition(":")
                values[key.strip()] = value.strip()
    return float(values[KEY])
'''


def _adapter(script: str, source: str, labels: Labels, key: str) -> bytes:
    stem, ext = posixpath.splitext(labels.file_name)
    prediction = f"{stem}.predict" if ext == ".solution" else labels.file_name
    return ADAPTER.format(
        script=posixpath.basename(script),
        source=source,
        reference=posixpath.basename(labels.file_name),
        prediction=posixpath.basename(prediction),
        key=key,
    ).encode()


# What the YAML may hold --------------------------------------------------------------


class _PlainLoader(yaml.SafeLoader):
    """YAML without aliases: a few bytes of `&a [*b, *b, ...]` chains expand to gigabytes
    once walked."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise BundleError("the bundle's YAML uses aliases (*name): write each value out")
        return super().compose_node(parent, index)


def load_yaml(body: bytes, what: str) -> Any:
    try:
        return yaml.load(_decode(body, what), Loader=_PlainLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise BundleError(f"{what} is not YAML: {str(exc).splitlines()[0]}") from None


class _Open(Schema):
    class Meta:
        unknown = INCLUDE  # reported as not carried over, not refused


def _text() -> fields.String:
    return fields.String(load_default=None, allow_none=True)


_COUNT = validate.Range(min=0, max=10**9)


def _an_index(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValidationError("an index is a number or a name")


class V2Column(_Open):
    key = _text()
    title = _text()
    index = fields.Integer(load_default=0, validate=_COUNT)
    sorting = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))
    computation = fields.Raw(load_default=None)


class V2Board(_Open):
    title = _text()
    columns = fields.List(
        fields.Nested(V2Column), load_default=[], validate=validate.Length(max=50)
    )


class V2Task(_Open):
    index = fields.Raw(required=True, validate=_an_index)
    name = _text()
    reference_data = _text()
    input_data = _text()
    scoring_program = _text()
    ingestion_program = _text()


class V2Phase(_Open):
    index = fields.Integer(load_default=0, validate=_COUNT)
    name = _text()
    description = _text()
    start = fields.Raw(load_default=None)
    end = fields.Raw(load_default=None)
    tasks = fields.List(fields.Raw(validate=_an_index), load_default=[])
    max_submissions_per_day = fields.Integer(load_default=None, validate=_COUNT)
    max_submissions = fields.Integer(load_default=None, validate=_COUNT)
    execution_time_limit = fields.Integer(load_default=None, validate=_COUNT)


class V2Page(_Open):
    title = _text()
    file = fields.String(required=True)


class V2Bundle(_Open):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="")
    image = _text()
    terms = _text()
    pages = fields.List(fields.Nested(V2Page), load_default=[], validate=validate.Length(max=50))
    phases = fields.List(
        fields.Nested(V2Phase), required=True, validate=validate.Length(min=1, max=MAX_ROUNDS)
    )
    tasks = fields.List(fields.Nested(V2Task), load_default=[], validate=validate.Length(max=100))
    leaderboards = fields.List(
        fields.Nested(V2Board), load_default=[], validate=validate.Length(max=10)
    )
    make_input_data_available = fields.Boolean(load_default=False)


class V15Phase(_Open):
    phasenumber = fields.Integer(load_default=None, validate=_COUNT)
    label = _text()
    description = _text()
    start_date = fields.Raw(load_default=None)
    max_submissions = fields.Integer(load_default=None, validate=_COUNT)
    max_submissions_per_day = fields.Integer(load_default=None, validate=_COUNT)
    execution_time_limit = fields.Integer(load_default=None, validate=_COUNT)
    reference_data = _text()
    input_data = _text()
    scoring_program = _text()
    ingestion_program = _text()


class V15Column(_Open):
    label = _text()
    rank = fields.Integer(load_default=0, validate=_COUNT)
    sort = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))


class V15Board(_Open):
    columns = fields.Dict(keys=fields.String(), values=fields.Nested(V15Column), load_default={})


class V15Bundle(_Open):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="")
    image = _text()
    html = fields.Dict(keys=fields.String(), values=fields.String(), load_default={})
    phases = fields.Dict(
        keys=fields.Integer(validate=_COUNT),
        values=fields.Nested(V15Phase),
        required=True,
        validate=validate.Length(min=1, max=MAX_ROUNDS),
    )
    leaderboard = fields.Nested(V15Board, load_default=None, allow_none=True)
    end_date = fields.Raw(load_default=None)


def checked(schema: Schema, raw: dict[str, Any]) -> dict[str, Any]:
    """The YAML's values, of the types the format gives them; the first problem named."""
    try:
        return schema.load(raw)
    except ValidationError as exc:
        raise BundleError(f"competition.yaml: {first_problem(exc.messages)}") from None
    except (OverflowError, ValueError, TypeError) as exc:
        raise BundleError(f"competition.yaml holds a value out of range: {exc}") from None


# The conversion ---------------------------------------------------------------------


def slug_of(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:63].strip("-")


def convert(data: bytes, *, slug: str | None = None, metric: str | None = None) -> Converted:
    """A bundle's spec, files and report; BundleError names the first problem."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"the bundle is larger than {MAX_BUNDLE_BYTES // 2**20} MiB")
    budget = Budget()
    bundle = Bundle(read_zip(data, "the bundle", budget), budget)
    raw = load_yaml(bundle.files[bundle.yaml], "competition.yaml")
    if not isinstance(raw, dict):
        raise BundleError("competition.yaml must be a mapping")
    report: list[str] = []
    if str(raw.get("version", "")).startswith("2"):
        for key in sorted(set(map(str, raw)) - V2_TOP):
            report.append(f"{key}: not carried over (no Podium setting)")
        shaped = checked(V2Bundle(), raw)
    else:
        shaped = _normalise_v15(checked(V15Bundle(), raw), report)
    title = str(shaped.get("title") or "").strip()
    if not title:
        raise BundleError("competition.yaml has no title")
    slug = slug or slug_of(title)
    if shaped.get("image"):
        report.append(f"image: {shaped['image']} not carried over (a competition has no logo)")
    description = _description(bundle, shaped)
    tasks = {t.get("index"): t for t in shaped.get("tasks") or []}
    columns = [c for board in shaped.get("leaderboards") or [] for c in board.get("columns") or []]
    if len(shaped.get("leaderboards") or []) > 1:
        report.append("leaderboards: only the first board's columns rank (one board per round)")
    phases = sorted(shaped.get("phases") or [], key=lambda p: p["index"])
    if not phases:
        raise BundleError("competition.yaml has no phases")
    ranking = _metric_of(columns, "leaderboard", report)
    files: dict[str, bytes] = {}
    rounds = []
    for n, phase in enumerate(phases):
        where = f"phase {phase.get('index', n)} ({phase.get('name') or ''})".replace(" ()", "")
        for key in sorted(k for k in phase if k.startswith("_unmapped_")):
            report.append(f"{where}: {key[len('_unmapped_') :]} not carried over")
        for key in ("solutions", "starting_kit", "public_data", "auto_migrate_to_this_phase"):
            if phase.get(key):
                report.append(f"{where}: {key} not carried over")
        following = phases[n + 1] if n + 1 < len(phases) else None
        rounds.append(
            _round(
                bundle,
                phase,
                following,
                tasks,
                ranking,
                shaped,
                where,
                n + 1,
                files,
                report,
                metric,
            )
        )
    spec = {
        "slug": slug,
        "title": title[:200],
        "description": description,
        "visibility": "private",
        "rounds": rounds,
    }
    report.append(
        f"visibility: imported as a private draft: `podium competition open {slug}` shows it"
    )
    return Converted(specs.validated(spec), files, report)


def _description(bundle: Bundle, shaped: dict[str, Any]) -> str:
    parts = [str(shaped.get("description") or "").strip()]
    for page in shaped.get("pages") or []:
        text = _decode(bundle.named(page.get("file"), f"page {page.get('title')}"), "a page")
        parts.append(f"## {str(page.get('title') or 'Page').strip().title()}\n\n{text.strip()}")
    if shaped.get("terms"):
        terms = _decode(bundle.named(shaped["terms"], "terms"), "the terms")
        parts.append(f"## Terms\n\n{terms.strip()}")
    return "\n\n".join(p for p in parts if p)[:100_000]


def _round(
    bundle: Bundle,
    phase: dict[str, Any],
    following: dict[str, Any] | None,
    tasks: dict[Any, dict],
    ranking: tuple[str | None, str | None, bool],
    raw: dict[str, Any],
    where: str,
    number: int,
    files: dict[str, bytes],
    report: list[str],
    metric: str | None,
) -> dict[str, Any]:
    task = _task_of(phase, tasks, where, report)
    starts = _when(phase.get("start"), f"{where}: start")
    if starts is None:
        raise BundleError(f"{where}: the phase has no start")
    ends = _when(phase.get("end"), f"{where}: end")
    if ends is None and following is not None:
        ends = _when(following.get("start"), f"{where}: the next phase's start")
        report.append(f"{where}: no end: it ends when the next phase starts")
    if ends is None:
        try:
            ends = starts + timedelta(days=LAST_PHASE_DAYS)
        except OverflowError:
            raise BundleError(f"{where}: it starts too far ahead to end") from None
        report.append(f"{where}: no end: it ends {LAST_PHASE_DAYS} days after it starts")
    if "reference_data" not in task:
        raise BundleError(f"{where}: its task has no reference_data (the labels to score against)")
    labels = _labels(
        bundle.folder(task["reference_data"], f"{where}: reference_data"),
        f"{where}: reference_data",
    )
    has_inputs = bool(task.get("input_data"))
    inputs = _inputs(
        bundle.folder(task["input_data"], f"{where}: input_data") if has_inputs else None,
        labels,
        f"{where}: input_data",
    )
    prefix = f"phase{number}"
    files[f"{prefix}/test.csv"], files[f"{prefix}/labels.csv"] = inputs, labels.csv
    round_: dict[str, Any] = {
        "name": str(phase.get("name") or f"Phase {number}")[:200],
        "starts_at": starts.isoformat(),
        "ends_at": ends.isoformat(),
        "test_inputs": f"{prefix}/test.csv",
        "labels": f"{prefix}/labels.csv",
    }
    publish = raw.get("make_input_data_available") is True or not has_inputs
    round_["publish_inputs"] = publish
    round_["accepts"] = "both" if publish else "models"
    if not has_inputs:
        report.append(f"{where}: no input_data: the test inputs are the ids alone, published")
    elif not publish:
        report.append(
            f"{where}: its input data is not made available: the round takes models only, "
            "graded in the sandbox"
        )
    if labels.lines:
        report.append(f"{where}: reference data {labels.file_name} has no ids: row N is id N-1")
    for limit, key in (
        ("max_submissions_per_day", "daily_quota"),
        ("max_submissions", "total_quota"),
    ):
        if phase.get(limit):
            round_[key] = max(1, int(phase[limit]))
    if phase.get("execution_time_limit"):
        round_["time_limit_s"] = min(86400, max(1, int(phase["execution_time_limit"])))
    if task.get("ingestion_program"):
        report.append(
            f"{where}: ingestion_program not carried over (code is submitted as a session's "
            "checkpoint, whose bound infer() the grading session runs)"
        )
    round_.update(_scoring(bundle, task, labels, ranking, metric, where, prefix, files, report))
    return round_


def _scoring(
    bundle: Bundle,
    task: dict[str, Any],
    labels: Labels,
    ranking: tuple[str | None, str | None, bool],
    metric: str | None,
    where: str,
    prefix: str,
    files: dict[str, bytes],
    report: list[str],
) -> dict[str, Any]:
    """The round's metric: the one asked for, else the scoring program run as a custom
    scorer, else the built-in metric the leaderboard column names."""
    key, builtin, higher = ranking
    if metric:
        report.append(f"{where}: ranked by {metric}, as asked (--metric)")
        return {"metric": metric} | ({"higher_is_better": higher} if metric == CUSTOM else {})
    why = "the bundle has none"
    if task.get("scoring_program"):
        program = _program_refusal(
            bundle.folder(task["scoring_program"], f"{where}: scoring_program")
        )
        if isinstance(program, tuple) and key and labels.lines:
            files[f"{prefix}/score.py"] = _adapter(program[0], program[1], labels, key)
            report.append(
                f"{where}: scoring program {program[0]} runs as the custom scorer, ranking by "
                f"its {key!r} ({'higher' if higher else 'lower'} is better)"
            )
            return {"metric": CUSTOM, "scorer": f"{prefix}/score.py", "higher_is_better": higher}
        why = (
            program
            if isinstance(program, str)
            else "it reads reference data with ids (Podium scores rows by id itself)"
            if not labels.lines
            else "no leaderboard column names its score"
        )
    if builtin is None:
        raise BundleError(
            f"{where}: no metric: the leaderboard column {key!r} is none of Podium's "
            f"built-in metrics, and the scoring program cannot run as a Podium scorer ({why}): "
            "name one with --metric"
        )
    report.append(
        f"{where}: scoring program not carried over ({why}): ranked by the built-in "
        f"{builtin}, which column {key!r} names"
    )
    if (builtin in LOWER_IS_BETTER) == higher:
        report.append(
            f"{where}: column {key!r} sorts the other way from {builtin}: Podium ranks {builtin} "
            f"{'lower' if builtin in LOWER_IS_BETTER else 'higher'} first"
        )
    return {"metric": builtin}


def import_bundle(
    organiser: User,
    data: bytes,
    store: ArtifactStore,
    public_key: str,
    *,
    slug: str | None = None,
    metric: str | None = None,
) -> tuple[Competition, list[str]]:
    """Create a competition from a bundle; its report of what was not carried over."""
    require_organiser_level(organiser)
    converted = convert(data, slug=slug, metric=metric)
    competition = specs.create(organiser, converted.spec, converted.files, store, public_key)
    return competition, converted.report


def report_dict(competition: Competition, report: list[str]) -> Mapping[str, Any]:
    return {"competition": specs.competition_dict(competition), "report": report}
