"""What `podium up --demo` seeds: users, and a two-round competition on scikit-learn's
bundled handwritten digits with hidden labels and a few teams' scored submissions, so
that a new user sees a live leaderboard at once."""

from __future__ import annotations

import io
import logging
import random
import tarfile
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from portal.extensions import db
from portal.models import Competition, CompetitionMember, Submission, User
from portal.services import datasets as dataset_service
from portal.services.artifacts import ArtifactStore
from portal.services.auth import create_user
from portal.services.competitions import entrants, grading, specs, submissions
from portal.timeutil import utcnow

log = logging.getLogger(__name__)

SLUG = "digits"
DESCRIPTION = """\
Recognise handwritten digits from 8x8 grey-level images (scikit-learn's bundled set).

* **Train** on the dataset `digits-train` (`id`, 64 pixels `p0`…`p63`, `label`).
* **Predict** the digit of each row of the hidden test set: `id,prediction`.
* Round 1 ranks by **accuracy**; its top 3 teams advance to round 2 (macro F1).

Try it: `podium run examples/digits/train.py -d digits-train`, then
`podium submit demo/1 -C digits` (the session's checkpoint, graded in a sandbox). Or
download the test inputs (`podium competition data digits`, or the link on this page),
predict every row, and send the CSV: `podium submit --file preds.csv -C digits`.
"""
TEAMS = {"owls": ["alice", "bob"], "larks": ["carol"], "herons": ["dave"], "finches": ["erin"]}
ACCURACY = {"owls": 0.97, "larks": 0.93, "herons": 0.88, "finches": 0.80}


def split(count: int) -> tuple[list[int], list[int]]:
    """The demo's fixed split of the digits: (test rows, training rows)."""
    order = list(range(count))
    random.Random(7).shuffle(order)
    return order[:500], order[500:]


def test_id(n: int) -> str:
    return f"d{n:04d}"


def _table(header: list[str], rows: list[list]) -> bytes:
    return ("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n").encode()


def _archive(name: str, data: bytes) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def seed_competition(public_key: str) -> bool:
    """Seed the digits competition once; False when it is there or cannot be made."""
    if db.session.scalar(select(Competition.id).where(Competition.slug == SLUG)):
        return False
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        log.warning("scikit-learn is not installed: no demo competition")
        return False
    if not public_key:
        log.warning("no grader key: no demo competition")
        return False
    images, labels = load_digits(return_X_y=True)
    test, train = split(len(labels))
    pixels = [f"p{i}" for i in range(64)]
    train_csv = _table(
        ["id", *pixels, "label"],
        [[f"t{i}", *images[i].astype(int).tolist(), int(labels[i])] for i in train],
    )
    test_ids = [test_id(n) for n in range(len(test))]
    inputs = _table(
        ["id", *pixels],
        [[t, *images[i].astype(int).tolist()] for t, i in zip(test_ids, test, strict=True)],
    )
    truth = {t: int(labels[i]) for t, i in zip(test_ids, test, strict=True)}
    hidden = _table(["id", "label"], [[t, y] for t, y in truth.items()])

    organiser = db.session.scalar(select(User).where(User.username == "admin"))
    assert organiser is not None
    store = ArtifactStore(current_app.config["ARTIFACT_ROOT"])
    config = current_app.config
    dataset_service.push(
        organiser,
        "digits-train",
        _archive("train.csv", train_csv),
        store,
        visibility="public",
        team=None,
        description="Training set of the digits competition",
        max_bytes=config["MAX_DATASET_BYTES"],
        max_unpacked_bytes=config["MAX_DATASET_UNPACKED_BYTES"],
        max_files=config["MAX_DATASET_FILES"],
    )
    now = utcnow()
    common = {
        "test_inputs": "test.csv",
        "labels": "labels.csv",
        "dataset": "digits-train:1",
        "daily_quota": 10,
        "total_quota": 200,
        "public_fraction": 0.4,
        "final_selections": 2,
        "time_limit_s": 300,
        "memory_mb": 2048,
        "publish_inputs": True,
        "accepts": "both",
    }
    spec = {
        "slug": SLUG,
        "title": "Handwritten digits",
        "description": DESCRIPTION,
        "visibility": "public",
        "team_size_limit": 3,
        "rounds": [
            {
                **common,
                "name": "Qualification",
                "starts_at": now - timedelta(days=2),
                "ends_at": now + timedelta(days=12),
                "metric": "accuracy",
                "advance_top": 3,
            },
            {
                **common,
                "name": "Final",
                "starts_at": now + timedelta(days=12),
                "ends_at": now + timedelta(days=26),
                "metric": "macro_f1",
            },
        ],
    }
    competition = specs.create(
        organiser, spec, {"test.csv": inputs, "labels.csv": hidden}, store, public_key
    )
    _seed_entries(competition, truth, store)
    return True


def _seed_entries(competition: Competition, truth: dict[str, int], store: ArtifactStore) -> None:
    """Each team's history: a few files whose accuracy climbs to the team's best. They
    are queued for the grader like any submission."""
    rng = random.Random(11)
    now = utcnow()
    for team_name, members in TEAMS.items():
        users = []
        for username in members:
            user = db.session.scalar(select(User).where(User.username == username))
            users.append(user or create_user(username, "podium"))
        team = entrants.create_team(users[0], competition, team_name)
        for user in users[1:]:
            team.members.append(CompetitionMember(competition_id=competition.id, user_id=user.id))
        db.session.commit()
        best = ACCURACY[team_name]
        steps = 4
        for n in range(steps):
            accuracy = best - (steps - 1 - n) * rng.uniform(0.02, 0.06)
            rows: list[list] = [["id", "prediction"]]
            for ident, label in truth.items():
                guess = label if rng.random() < accuracy else (label + rng.randint(1, 9)) % 10
                rows.append([ident, guess])
            body = ("\n".join(",".join(map(str, r)) for r in rows) + "\n").encode()
            submission = submissions.submit_file(
                users[n % len(users)], competition, body, store, None, round_number=1
            )
            submission.created_at = now - timedelta(hours=40 - 10 * n, minutes=rng.randint(0, 59))
            db.session.commit()
    # Queued now that their times are set; the grader scores them as it starts.
    redis = current_app.extensions.get("redis")
    for submission in db.session.scalars(select(Submission).order_by(Submission.id)):
        grading.enqueue_scoring(redis, submission)
