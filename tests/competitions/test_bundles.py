"""Codabench and CodaLab competition bundles, built here from the formats' documentation:
imported into rounds, hidden labels and a metric or a custom scorer running the bundle's
own scoring program; everything else reported line by line; hostile bundles refused with
nothing created."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest
import yaml

from portal.extensions import db
from portal.models import Competition, Round
from tests import factories
from tests.competitions.test_competitions_api import score_all, submit

IMPORT = "/api/v1/competitions/import"

# A CodaLab-style scoring program of the standard library: reads input/ref/*.solution
# and input/res/*.predict (one label per line), writes output/scores.txt.
SCORING_PROGRAM = """import os
import sys

input_dir, output_dir = sys.argv[1], sys.argv[2]
ref_dir, res_dir = os.path.join(input_dir, "ref"), os.path.join(input_dir, "res")
total = right = 0
for name in sorted(os.listdir(ref_dir)):
    truth = open(os.path.join(ref_dir, name)).read().split()
    guess = open(os.path.join(res_dir, name.replace(".solution", ".predict"))).read().split()
    total += len(truth)
    right += sum(3 if a == b else 0 for a, b in zip(truth, guess))
with open(os.path.join(output_dir, "scores.txt"), "w") as out:
    out.write("points: %f\\n" % (right / total))
"""


def zipped(
    files: dict[str, bytes], links: tuple[str, ...] = (), stored: tuple[str, ...] = ()
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in files.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
            if name in links:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, body)
    return buffer.getvalue()


def data_files(rows: int = 40) -> dict[str, bytes]:
    return factories.competition_files(rows=rows)


def codabench(**changes) -> dict[str, bytes]:
    """A version 2 bundle: two phases of one task (CSV data with ids), a scoring program
    that needs numpy, a board of two columns, pages, terms and a logo."""
    files = data_files()
    document = {
        "version": 2,
        "title": "Toy Classification",
        "description": "Guess the class.",
        "image": "logo.png",
        "terms": "terms.md",
        "docker_image": "codalab/codalab-legacy:py39",
        "registration_auto_approve": True,
        "make_input_data_available": True,
        "pages": [{"title": "overview", "file": "pages/overview.md"}],
        "phases": [
            {
                "index": 0,
                "name": "Development",
                "start": "2026-11-01",
                "end": "2026-11-20",
                "tasks": [0],
                "max_submissions_per_day": 3,
                "max_submissions": 30,
                "execution_time_limit": 900,
            },
            {"index": 1, "name": "Final", "start": "2026-11-21", "tasks": [0]},
        ],
        "tasks": [
            {
                "index": 0,
                "name": "toy",
                "reference_data": "reference_data.zip",
                "input_data": "input_data.zip",
                "scoring_program": "scoring_program.zip",
            }
        ],
        "leaderboards": [
            {
                "title": "Results",
                "key": "main",
                "columns": [
                    {"title": "F1", "key": "f1", "index": 1, "sorting": "desc"},
                    {"title": "Accuracy", "key": "accuracy", "index": 0, "sorting": "desc"},
                ],
            }
        ],
    }
    document.update(changes)
    return {
        "competition.yaml": yaml.safe_dump(document).encode(),
        "logo.png": b"\x89PNG not really",
        "terms.md": b"Be **fair**.",
        "pages/overview.md": b"Classify rows into three classes.",
        "reference_data.zip": zipped({"labels.csv": files["labels.csv"]}),
        "input_data.zip": zipped({"test.csv": files["test.csv"]}),
        "scoring_program.zip": zipped(
            {
                "metadata.yaml": b"command: python3 $program/score.py $input $output\n",
                "score.py": b"import numpy as np\nprint(np.mean([1]))\n",
            }
        ),
    }


def codalab(labels: list[str]) -> dict[str, bytes]:
    """A CodaLab 1.5 bundle: one phase, reference data of one label per line, no input
    data, and a scoring program of the standard library ranking by its own key."""
    document = {
        "title": "Lines",
        "description": "Predict one label per line.",
        "has_registration": False,
        "html": {"overview": "overview.html", "terms": "terms.html"},
        "phases": {
            1: {
                "phasenumber": 1,
                "label": "Only phase",
                "start_date": "2026-11-01",
                "max_submissions": 10,
                "color": "green",
                "scoring_program": "program.zip",
                "reference_data": "reference.zip",
            }
        },
        "end_date": "2026-12-31",
        "leaderboard": {
            "leaderboards": {"RESULTS": {"label": "Results", "rank": 1}},
            "columns": {"points": {"leaderboard": "RESULTS", "label": "Points", "rank": 1}},
        },
    }
    return {
        "competition.yaml": yaml.safe_dump(document).encode(),
        "overview.html": b"<p>Lines of labels.</p>",
        "terms.html": b"<p>No cheating.</p>",
        "reference.zip": zipped({"lines.solution": ("\n".join(labels) + "\n").encode()}),
        "program.zip": zipped(
            {
                "metadata": b"command: python $program/evaluate.py $input $output\n",
                "evaluate.py": SCORING_PROGRAM.encode(),
            }
        ),
    }


def send(client, headers, bundle: bytes, **query):
    return client.post(
        IMPORT,
        data={"bundle": (io.BytesIO(bundle), "bundle.zip")},
        headers=headers,
        content_type="multipart/form-data",
        query_string=query,
    )


@pytest.fixture
def olga(app):
    return factories.headers(factories.token(factories.user("olga")))


def test_a_codabench_bundle_becomes_rounds_with_a_report(app, client, redis, olga):
    made = send(client, olga, zipped(codabench()))
    assert made.status_code == 201, made.get_json()
    body = made.get_json()
    competition = body["competition"]
    assert (competition["slug"], competition["title"]) == (
        "toy-classification",
        "Toy Classification",
    )
    first, final = db.session.scalars(db.select(Round).order_by(Round.number)).all()
    assert (first.name, first.metric, first.daily_quota, first.total_quota) == (
        "Development",
        "accuracy",
        3,
        30,
    )
    assert first.time_limit_s == 900 and first.publish_inputs and first.accepts == "both"
    assert final.starts_at.date().isoformat() == "2026-11-21"
    assert (final.ends_at - final.starts_at).days == 365
    stored = db.session.scalar(db.select(Competition))
    assert stored.visibility == "private"
    assert "## Overview" in stored.description and "Be **fair**." in stored.description
    report = "\n".join(body["report"])
    for expected in (
        "image: logo.png not carried over",
        "docker_image: not carried over",
        "registration_auto_approve: not carried over",
        "column 'f1' not carried over",
        "it imports numpy",
        "ranked by the built-in accuracy, which column 'accuracy' names",
        "phase 1 (Final): no end",
    ):
        assert expected in report, report
    # It grades: once opened, a file submission to the open round (the final) is scored
    # against the imported hidden labels.
    slug = competition["slug"]
    opened = client.patch(
        f"/api/v1/competitions/{slug}", json={"visibility": "public"}, headers=olga
    )
    assert opened.status_code == 200, opened.get_json()
    ann = factories.headers(factories.token(factories.user("ann")))
    sent = submit(client, ann, factories.predictions(data_files(), 40), slug=slug)
    assert sent.status_code == 201, sent.get_json()
    score_all(app, redis)
    mine = client.get(f"/api/v1/competitions/{slug}/submissions", headers=ann).get_json()[0]
    assert (mine["round"], mine["status"], mine["public_score"]) == (2, "scored", 1.0)


def test_a_codalab_scoring_program_runs_unchanged_as_the_custom_scorer(app, client, redis, olga):
    labels = [str(i % 3) for i in range(40)]
    made = send(client, olga, zipped(codalab(labels)), slug="lines")
    assert made.status_code == 201, made.get_json()
    report = "\n".join(made.get_json()["report"])
    assert (
        "scoring program evaluate.py runs as the custom scorer, ranking by its 'points'" in report
    )
    assert "has no ids: row N is id N-1" in report
    assert "no input_data: the test inputs are the ids alone" in report
    assert "color not carried over" in report and "has_registration: not carried over" in report
    round_ = db.session.scalar(db.select(Round))
    assert (round_.metric, round_.higher_is_better, round_.publish_inputs) == ("custom", True, True)
    assert round_.ends_at.date().isoformat() == "2026-12-31"
    # A participant sends `id,prediction`; the grader runs the bundle's own program on
    # each board's rows, in its sandbox: 3 points a right answer.
    opened = client.patch("/api/v1/competitions/lines", json={"visibility": "public"}, headers=olga)
    assert opened.status_code == 200, opened.get_json()
    ann = factories.headers(factories.token(factories.user("ann")))
    for right in (labels, ["x"] * len(labels)):
        predictions = "id,prediction\n" + "".join(f"{i},{v}\n" for i, v in enumerate(right))
        sent = submit(client, ann, predictions.encode(), slug="lines")
        assert sent.status_code == 201, sent.get_json()
    score_all(app, redis)
    seen = client.get(
        "/api/v1/competitions/lines/submissions", headers=olga.copy(), query_string={"team": "ann"}
    ).get_json()
    scores = sorted((s["public_score"], s["private_score"]) for s in seen)
    assert scores == [(0.0, 0.0), (3.0, 3.0)], seen


@pytest.mark.parametrize(
    "bundle, problem",
    [
        (
            lambda: zipped({k: v for k, v in codabench().items() if k != "reference_data.zip"}),
            "the bundle holds no 'reference_data.zip'",
        ),
        (lambda: zipped({**codabench(), "../escape.txt": b"x"}), "a path outside the bundle"),
        (lambda: zipped({**codabench(), "/etc/cron.d/x": b"x"}), "a path outside the bundle"),
        (lambda: zipped({**codabench(), "link": b"/etc/passwd"}, links=("link",)), "a link"),
        (
            lambda: zipped(
                codabench(
                    tasks=[
                        {
                            "index": 0,
                            "reference_data": "../../etc/passwd",
                            "scoring_program": "scoring_program.zip",
                        }
                    ]
                )
            ),
            "is not a path inside the bundle",
        ),
        (
            lambda: zipped(
                {**codabench(), "reference_data.zip": zipped({"big.csv": b"0" * 50 * 2**20})}
            ),
            "refused as a zip bomb",
        ),
        (lambda: zipped({"readme.txt": b"hello"}), "holds no competition.yaml"),
        (lambda: b"not a zip", "is not a zip file"),
        (
            lambda: zipped(
                codabench(leaderboards=[{"columns": [{"key": "weird_score", "index": 0}]}])
            ),
            "name one with --metric",
        ),
    ],
)
def test_a_bad_bundle_is_refused_and_nothing_is_created(client, olga, bundle, problem):
    refused = send(client, olga, bundle())
    assert refused.status_code == 422, refused.get_json()
    assert problem in refused.get_json()["error"]["message"]
    assert db.session.scalar(db.select(db.func.count(Competition.id))) == 0


def test_metric_given_where_the_bundle_names_none(client, olga):
    bundle = zipped(codabench(leaderboards=[{"columns": [{"key": "weird_score", "index": 0}]}]))
    made = send(client, olga, bundle, metric="macro_f1")
    assert made.status_code == 201, made.get_json()
    assert "ranked by macro_f1, as asked" in "\n".join(made.get_json()["report"])
    assert {r.metric for r in db.session.scalars(db.select(Round))} == {"macro_f1"}


def test_importing_needs_the_organiser_level(client, app):
    from portal.models import Level

    stranger = factories.headers(factories.token(factories.user("sam", level=Level.USER)))
    refused = send(client, stranger, zipped(codabench()))
    assert refused.status_code == 403
    assert db.session.scalar(db.select(db.func.count(Competition.id))) == 0


def test_the_papers_metrics_are_named_by_a_bundle_too(client, olga):
    columns = [{"title": "Token F1", "key": "token-f1", "index": 0}]
    made = send(client, olga, zipped(codabench(leaderboards=[{"columns": columns}])))
    assert made.status_code == 201, made.get_json()
    assert {r.metric for r in db.session.scalars(db.select(Round))} == {"token_f1"}


def phase(**changes) -> dict:
    return {
        "index": 0,
        "name": "P",
        "start": "2026-11-01",
        "end": "2026-12-20",
        "tasks": [0],
    } | changes


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"phases": "every day"}, "phases"),
        ({"phases": ["not a mapping"]}, "phases"),
        ({"phases": [phase(index="first")]}, "index"),
        ({"phases": [phase(max_submissions=float("inf"))]}, "max_submissions"),
        ({"phases": [phase(max_submissions_per_day=10**30)]}, "max_submissions_per_day"),
        ({"phases": [phase(start="9999-12-31", end=None)]}, "too far ahead"),
        ({"phases": [phase(tasks=5)]}, "tasks"),
        ({"phases": [phase(tasks=[[0]])]}, "tasks"),
        ({"phases": [phase(index=i) for i in range(21)]}, "phases"),
        ({"tasks": [{"index": [0], "reference_data": "reference_data.zip"}]}, "index"),
        ({"leaderboards": "results"}, "leaderboards"),
        ({"leaderboards": [{"columns": [{"key": "accuracy", "sorting": "sideways"}]}]}, "sorting"),
        ({"pages": [{"title": "no file"}]}, "file"),
    ],
)
def test_a_bundle_whose_yaml_is_malformed_names_the_problem(client, olga, changes, problem):
    refused = send(client, olga, zipped(codabench(**changes)))
    assert refused.status_code == 422, refused.get_data(as_text=True)[:400]
    assert problem in refused.get_json()["error"]["message"]
    assert db.session.scalar(db.select(db.func.count(Competition.id))) == 0


def test_yaml_aliases_are_refused_before_they_expand(client, olga):
    layers = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    layers += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bundle = codabench()
    bundle["competition.yaml"] = ("\n".join(layers) + "\ntitle: *a8\nversion: 2\n").encode()
    refused = send(client, olga, zipped(bundle))
    assert refused.status_code == 422
    assert "aliases" in refused.get_json()["error"]["message"]


def test_input_data_stays_hidden_unless_the_bundle_makes_it_available(client, olga):
    made = send(client, olga, zipped(codabench(make_input_data_available="false")))
    assert made.status_code == 201, made.get_json()
    first = db.session.scalar(db.select(Round).order_by(Round.number))
    assert (first.publish_inputs, first.accepts) == (False, "models")


def test_a_scoring_program_that_nests_too_deeply_is_reported_not_run(client, olga):
    bundle = codabench()
    deep = "x = " + "(" * 200_000 + ")" * 200_000 + "\n"
    bundle["scoring_program.zip"] = zipped(
        {
            "metadata.yaml": b"command: python3 $program/score.py $input $output\n",
            "score.py": deep.encode(),
        },
        stored=("score.py",),
    )
    made = send(client, olga, zipped(bundle, stored=("scoring_program.zip",)))
    assert made.status_code == 201, made.get_json()
    report = "\n".join(made.get_json()["report"])
    assert "does not parse" in report or "nests too deeply" in report, report
