import csv
import io
import json
from datetime import timedelta

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from grader import jobs
from portal.api.code import artifact_store
from portal.extensions import db
from portal.models import CompetitionTeam, Round, Submission
from portal.services import sealing
from portal.services.competitions import core, rounds
from portal.timeutil import utcnow
from tests import factories


def create(client, headers, spec=None, files=None):
    files = files or factories.competition_files()
    spec = spec or factories.competition_spec()
    data = {"spec": json.dumps(spec)}
    data.update({name: (io.BytesIO(body), name) for name, body in files.items()})
    return client.post(
        "/api/v1/competitions", data=data, headers=headers, content_type="multipart/form-data"
    )


@pytest.fixture
def setup(app, client):
    organiser = factories.headers(factories.token(factories.user("olga")))
    files = factories.competition_files()
    response = create(client, organiser, files=files)
    assert response.status_code == 201, response.get_json()
    users = {
        n: factories.headers(factories.token(factories.user(n))) for n in ("ann", "bob", "cid")
    }
    return {"organiser": organiser, "files": files, **users}


def submit(client, headers, body, slug="toy", **query):
    return client.post(
        f"/api/v1/competitions/{slug}/submissions",
        data=body,
        headers=headers,
        content_type="text/csv",
        query_string=query,
    )


def score_all(app, redis):
    store = artifact_store()
    for submission_id in db.session.scalars(db.select(Submission.id).order_by(Submission.id)):
        jobs.process(submission_id, redis, store)


def test_labels_are_sealed_and_only_the_grader_opens_them(setup, app):
    round_ = db.session.scalar(db.select(Round))
    sealed = artifact_store().path(round_.labels_digest).read_bytes()
    assert b"label" not in sealed
    assert sealing.unseal(jobs.scoring.key_file(), sealed) == setup["files"]["labels.csv"]
    assert round_.rows == 40 and round_.higher_is_better


def test_a_bad_spec_names_its_first_problem_and_creates_nothing(client, app):
    headers = factories.headers(factories.token(factories.user("olga")))
    files = factories.competition_files()
    files["labels.csv"] = files["labels.csv"].replace(b"r005,", b"r999,")
    body = create(client, headers, files=files).get_json()
    assert "id 'r999' is not in the test set" in body["error"]["message"]
    spec = factories.competition_spec(metric="bleu")
    body = create(client, headers, spec=spec).get_json()
    assert body["error"]["code"] == "invalid_spec" and "metric" in body["error"]["message"]
    missing = factories.competition_spec(labels="other.csv")
    assert (
        "'other.csv' was not uploaded"
        in create(client, headers, spec=missing).get_json()["error"]["message"]
    )
    assert client.get("/api/v1/competitions").get_json() == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\x89PNG\x00\x00", "not a CSV file"),
        (b"id,label\nr000,1\n", "must have the columns id,prediction"),
        (b"id,prediction\nr000,1\n", "has 1 rows; the test set has 40"),
        (None, "appears twice"),
        (None, "is missing"),
        (None, "is not in the test set"),
    ],
)
def test_invalid_predictions_are_refused_and_do_not_count(setup, client, body, problem):
    good = factories.predictions(setup["files"], 40).decode().splitlines()
    if body is None:
        lines = list(good)
        if problem == "appears twice":
            lines[5] = lines[4]
        elif problem == "is missing":
            lines[7] = lines[7].split(",")[0] + ",NaN"
        else:
            lines[3] = "zzz,1"
        body = ("\n".join(lines) + "\n").encode()
    response = submit(client, setup["ann"], body)
    assert response.status_code == 422
    assert problem in response.get_json()["error"]["message"]
    assert db.session.scalar(db.select(db.func.count(Submission.id))) == 0
    assert db.session.scalar(db.select(db.func.count(CompetitionTeam.id))) == 0  # no team


def test_scores_rank_and_ties_go_to_the_earlier_submission(setup, app, client, redis):
    files = setup["files"]
    for name, correct in (("ann", 20), ("bob", 40), ("cid", 20)):
        response = submit(client, setup[name], factories.predictions(files, correct))
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["status"] == "scoring"
    score_all(app, redis)
    board = client.get("/api/v1/competitions/toy/leaderboard").get_json()  # anonymous
    assert [r["team"] for r in board["rows"]] == ["bob", "ann", "cid"]
    # Scores are the accuracy over the public rows, as scikit-learn computes it.
    round_ = db.session.scalar(db.select(Round))
    ids = rounds.read_ids(artifact_store(), round_)
    order = sorted(ids, key=lambda i: core.split_key(round_.split_salt, i))
    public = set(order[:20])
    truth = dict(line.split(",") for line in files["labels.csv"].decode().splitlines()[1:])
    guess = dict(
        line.split(",") for line in factories.predictions(files, 40).decode().splitlines()[1:]
    )
    expected = accuracy_score([truth[i] for i in public], [guess[i] for i in public])
    assert board["rows"][0]["score"] == pytest.approx(expected)
    assert board["rows"][0]["submissions"] == 1
    # Private scores are hidden while the round runs.
    mine = client.get("/api/v1/competitions/toy/submissions", headers=setup["bob"]).get_json()
    assert mine[0]["public_score"] == pytest.approx(expected) and mine[0]["private_score"] is None
    refused = client.get("/api/v1/competitions/toy/leaderboard?board=private")
    assert refused.status_code == 409


def test_the_cache_is_rebuilt_from_the_database(setup, app, client, redis):
    for name, correct in (("ann", 10), ("bob", 20), ("ann", 25)):
        submit(client, setup[name], factories.predictions(setup["files"], correct))
    score_all(app, redis)
    before = client.get("/api/v1/competitions/toy/leaderboard").get_json()
    assert before["rows"][0]["submissions"] == 2 or before["rows"][1]["submissions"] == 2
    for key in redis.keys("podium:lb:*"):
        redis.delete(key)
    after = client.get("/api/v1/competitions/toy/leaderboard").get_json()
    assert after["rows"] == before["rows"]


def test_quotas_count_accepted_submissions_only(app, client, redis):
    organiser = factories.headers(factories.token(factories.user("olga")))
    spec = factories.competition_spec(daily_quota=2, total_quota=3)
    assert create(client, organiser, spec=spec).status_code == 201
    ann = factories.headers(factories.token(factories.user("ann")))
    files = factories.competition_files()
    assert submit(client, ann, b"nonsense").status_code == 422
    for _ in range(2):
        assert submit(client, ann, factories.predictions(files, 5)).status_code == 201
    over = submit(client, ann, factories.predictions(files, 5))
    assert over.status_code == 429 and "of today" in over.get_json()["error"]["message"]
    # Yesterday's submissions count against the total only.
    db.session.execute(
        db.update(Submission).values(created_at=utcnow() - timedelta(days=1, minutes=1))
    )
    db.session.commit()
    assert submit(client, ann, factories.predictions(files, 5)).status_code == 201
    total = submit(client, ann, factories.predictions(files, 5))
    assert total.status_code == 429 and "all 3 submissions" in total.get_json()["error"]["message"]


def test_teams_invitations_codes_and_size_limit(setup, client):
    ann, bob, cid = setup["ann"], setup["bob"], setup["cid"]
    url = "/api/v1/competitions/toy"
    team = client.post(f"{url}/teams", json={"name": "owls"}, headers=ann).get_json()
    assert team["members"] == ["ann"]
    assert client.post(f"{url}/teams", json={"name": "larks"}, headers=ann).status_code == 409
    client.post(f"{url}/team/invites", json={"username": "bob"}, headers=ann)
    assert client.get(f"{url}/team", headers=bob).get_json()["invitations"] == ["owls"]
    refused = client.post(f"{url}/team/join", json={"team": "owls"}, headers=cid)
    assert refused.status_code == 403
    joined = client.post(f"{url}/team/join", json={"team": "owls"}, headers=bob).get_json()
    assert joined["members"] == ["ann", "bob"]
    full = client.post(f"{url}/team/join", json={"code": team["invite_code"]}, headers=cid)
    assert full.status_code == 409 and "is full" in full.get_json()["error"]["message"]
    assert client.post(f"{url}/team/leave", headers=bob).status_code == 204
    joined = client.post(f"{url}/team/join", json={"code": team["invite_code"]}, headers=cid)
    assert joined.get_json()["members"] == ["ann", "cid"]
    # The team submits as one: its members see the same submissions.
    submit(client, ann, factories.predictions(setup["files"], 3))
    assert len(client.get(f"{url}/submissions", headers=cid).get_json()) == 1
    # Whoever submitted stays: a new team would bring fresh quotas and a second entry.
    stays = client.post(f"{url}/team/leave", headers=ann)
    assert stays.status_code == 409 and "you stay in it" in stays.get_json()["error"]["message"]
    assert client.post(f"{url}/team/leave", headers=cid).status_code == 204


def test_private_board_selection_export_and_advancement(app, client, redis):
    organiser = factories.headers(factories.token(factories.user("olga")))
    spec = factories.competition_spec(rounds=2, advance_top=1, final_selections=1)
    files = factories.competition_files()
    assert create(client, organiser, spec=spec, files=files).status_code == 201
    ann = factories.headers(factories.token(factories.user("ann")))
    bob = factories.headers(factories.token(factories.user("bob")))
    first = submit(client, ann, factories.predictions(files, 40)).get_json()
    submit(client, ann, factories.predictions(files, 10))
    submit(client, bob, factories.predictions(files, 20))
    score_all(app, redis)
    url = "/api/v1/competitions/toy"
    chosen = client.post(
        f"{url}/submissions/{first['id']}/select", json={"selected": True}, headers=ann
    )
    assert chosen.get_json()["selected"] is True
    # The round ends; round 2 opens.
    rounds = list(db.session.scalars(db.select(Round).order_by(Round.number)))
    now = utcnow()
    rounds[0].starts_at, rounds[0].ends_at = now - timedelta(days=2), now - timedelta(minutes=1)
    rounds[1].starts_at, rounds[1].ends_at = now - timedelta(seconds=30), now + timedelta(days=1)
    db.session.commit()
    private = client.get(f"{url}/rounds/1/leaderboard?board=private").get_json()
    assert [r["team"] for r in private["rows"]] == ["ann", "bob"]
    assert private["rows"][0]["score"] == 1.0 and private["rows"][0]["submission"] == first["id"]
    exported = client.get(f"{url}/rounds/1/ranking.csv", headers=organiser)
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [(r["rank"], r["team"], r["members"]) for r in rows] == [
        ("1", "ann", "ann"),
        ("2", "bob", "bob"),
    ]
    assert client.get(f"{url}/rounds/1/ranking.csv", headers=ann).status_code == 403
    # Only the top team advances.
    assert submit(client, ann, factories.predictions(files, 5)).status_code == 201
    refused = submit(client, bob, factories.predictions(files, 5))
    assert (
        refused.status_code == 403 and "did not advance" in refused.get_json()["error"]["message"]
    )


def test_disqualification_and_rescoring(setup, app, client, redis):
    files = setup["files"]
    ann = submit(client, setup["ann"], factories.predictions(files, 40)).get_json()
    submit(client, setup["bob"], factories.predictions(files, 20))
    score_all(app, redis)
    url = "/api/v1/competitions/toy"
    reason = {"reason": "hand-labelled the test set"}
    assert (
        client.post(
            f"{url}/submissions/{ann['id']}/disqualify", json=reason, headers=setup["bob"]
        ).status_code
        == 403
    )
    client.post(
        f"{url}/submissions/{ann['id']}/disqualify", json=reason, headers=setup["organiser"]
    )
    board = client.get(f"{url}/leaderboard").get_json()
    assert [r["team"] for r in board["rows"]] == ["bob"]
    seen = client.get(f"{url}/submissions/{ann['id']}", headers=setup["ann"]).get_json()
    assert seen["disqualified_reason"] == "hand-labelled the test set"
    # Fixed labels: every label becomes 9, so only wrong answers are right now.
    fixed = "id,label\n" + "".join(
        f"{line.split(',')[0]},9\n" for line in files["labels.csv"].decode().splitlines()[1:]
    )
    answer = client.put(
        f"{url}/rounds/1/labels", data=fixed, headers=setup["organiser"], content_type="text/csv"
    )
    assert answer.get_json()["queued"] == 2
    jobs.rescore(db.session.scalar(db.select(Round.id)), redis, artifact_store())
    bob = client.get(f"{url}/submissions", headers=setup["bob"]).get_json()[0]
    round_ = db.session.scalar(db.select(Round))
    ids = rounds.read_ids(artifact_store(), round_)
    public = sorted(ids, key=lambda i: core.split_key(round_.split_salt, i))[:20]
    # bob's first 20 rows said the old labels, the others 9: now those are right.
    expected = np.mean([ids.index(i) >= 20 for i in public])
    assert bob["public_score"] == pytest.approx(expected)
    assert client.get(f"{url}/leaderboard").get_json()["rows"][0]["score"] == pytest.approx(
        expected
    )


def test_custom_scorer_runs_in_a_child_process(app, client, redis):
    organiser = factories.headers(factories.token(factories.user("olga")))
    files = factories.competition_files()
    files["score.py"] = (
        b"def score(labels, predictions):\n"
        b"    return sum(a == b for a, b in zip(labels, predictions)) * 10.0\n"
    )
    spec = factories.competition_spec(metric="custom", scorer="score.py", higher_is_better=True)
    assert create(client, organiser, spec=spec, files=files).status_code == 201
    ann = factories.headers(factories.token(factories.user("ann")))
    submit(client, ann, factories.predictions(files, 40))
    score_all(app, redis)
    mine = client.get("/api/v1/competitions/toy/submissions", headers=ann).get_json()[0]
    assert mine["status"] == "scored" and mine["public_score"] == 200.0


def test_files_that_need_the_careful_reader_mean_the_same(setup, app, client, redis):
    """Quotes, spaces, CRLF line ends and shuffled rows take the row-by-row path; the
    values read are the same as from the plain file."""
    plain = factories.predictions(setup["files"], 25).decode()
    header, *lines = plain.strip().split("\n")
    lines = lines[::-1]
    variants = [
        header + "\r\n" + "\r\n".join(lines) + "\r\n",
        header + "\n" + "\n".join(f'"{a}", {b}' for a, b in (x.split(",") for x in lines)),
    ]
    for variant in variants:
        response = submit(client, setup["ann"], variant.encode())
        assert response.status_code == 201, response.get_json()
    submit(client, setup["bob"], plain.encode())
    score_all(app, redis)
    scores = {s.public_score for s in db.session.scalars(db.select(Submission))}
    assert len(scores) == 1


def test_a_private_competition_is_a_draft_until_opened(app, client):
    organiser = factories.headers(factories.token(factories.user("olga")))
    spec = {**factories.competition_spec("draft"), "visibility": "private"}
    assert create(client, organiser, spec=spec).status_code == 201
    ann = factories.headers(factories.token(factories.user("ann")))
    assert client.get("/api/v1/competitions/draft", headers=ann).status_code == 404
    assert client.get("/api/v1/competitions").get_json() == []
    assert submit(client, ann, b"id,prediction\n", slug="draft").status_code == 404
    refused = client.patch("/api/v1/competitions/draft", json={"visibility": "public"}, headers=ann)
    assert refused.status_code == 404
    opened = client.patch(
        "/api/v1/competitions/draft", json={"visibility": "public"}, headers=organiser
    )
    assert opened.get_json()["visibility"] == "public"
    assert [c["slug"] for c in client.get("/api/v1/competitions").get_json()] == ["draft"]
    late = client.patch(
        "/api/v1/competitions/draft", json={"team_size_limit": 5}, headers=organiser
    )
    assert late.status_code == 409  # its round has started


def test_creating_a_competition_needs_the_organiser_level(app, client):
    from portal.models import Level

    stranger = factories.headers(factories.token(factories.user("sam", level=Level.USER)))
    refused = create(client, stranger)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "needs_organiser"
    assert client.get("/api/v1/competitions", headers=stranger).get_json() == []
    organiser = factories.headers(factories.token(factories.user("olga", level=Level.ORGANISER)))
    assert create(client, organiser).status_code == 201


def angle_files(rows: int = 40) -> dict[str, bytes]:
    ids = [f"r{i:03d}" for i in range(rows)]
    angles = [(37 * i) % 360 for i in range(rows)]
    inputs = "id,x\n" + "".join(f"{i},0\n" for i in ids)
    truth = "id,label\n" + "".join(f"{i},{a}\n" for i, a in zip(ids, angles, strict=True))
    return {"test.csv": inputs.encode(), "labels.csv": truth.encode()}


def test_the_papers_metrics_rank_angles_within_a_tolerance_and_text_by_token_f1(app, client, redis):
    organiser = factories.headers(factories.token(factories.user("olga")))
    ann = factories.headers(factories.token(factories.user("ann")))
    files = angle_files()
    # A negative tolerance, or one for a metric without it: refused, nothing created.
    for bad in ({"metric": "accuracy_within", "tolerance": -1}, {"tolerance": 2}):
        refused = create(client, organiser, spec=factories.competition_spec(**bad), files=files)
        assert refused.status_code == 422, refused.get_json()
        assert "tolerance" in refused.get_json()["error"]["message"]
    assert client.get("/api/v1/competitions/toy", headers=organiser).status_code == 404
    spec = factories.competition_spec(metric="accuracy_within", tolerance=2.5)
    assert create(client, organiser, spec=spec, files=files).status_code == 201
    shown = client.get("/api/v1/competitions/toy", headers=ann).get_json()["rounds"][0]
    assert (shown["metric"], shown["tolerance"], shown["higher_is_better"]) == (
        "accuracy_within",
        2.5,
        True,
    )
    # Every prediction 2 degrees off, the other way round the circle for the first half.
    lines = files["labels.csv"].decode().split()[1:]
    rows = [line.split(",") for line in lines]
    body = "id,prediction\n" + "".join(
        f"{i},{(int(a) - 2) % 360 if n < 20 else int(a) + 362}\n" for n, (i, a) in enumerate(rows)
    )
    assert submit(client, ann, body.encode()).status_code == 201
    score_all(app, redis)
    mine = client.get("/api/v1/competitions/toy/submissions", headers=ann).get_json()[0]
    assert mine["status"] == "scored" and mine["public_score"] == 1.0
    # Tightened to 1 degree: every submission is scored again, and now misses.
    changed = client.patch(
        "/api/v1/competitions/toy/rounds/1", json={"tolerance": 1.0}, headers=organiser
    )
    assert changed.status_code == 200, changed.get_json()
    score_all(app, redis)
    rescored = client.get("/api/v1/competitions/toy/submissions", headers=ann).get_json()[0]
    assert rescored["public_score"] == 0.0

    words = {
        "test.csv": b"id,typed\nw1,helo wrld\nw2,the cat\n",
        "labels.csv": b"id,label\nw1,hello world\nw2,the cat sat\n",
    }
    text = factories.competition_spec("typos", metric="token_f1", public_fraction=1.0)
    assert create(client, organiser, spec=text, files=words).status_code == 201
    submit(client, ann, b"id,prediction\nw1,hello wrld\nw2,the cat\n", slug="typos")
    score_all(app, redis)
    typed = client.get("/api/v1/competitions/typos/submissions", headers=ann).get_json()[0]
    # w1: 1 of 2 tokens: P = R = 1/2, F1 = 0.5; w2: P = 1, R = 2/3, F1 = 0.8.
    assert typed["public_score"] == pytest.approx((0.5 + 0.8) / 2)


def test_a_model_submission_keeps_its_record_after_its_session_is_gone(setup, app, client):
    import hashlib

    from portal.models import Checkpoint, User
    from portal.services import sessions as session_service

    ann_user = db.session.scalar(db.select(User).where(User.username == "ann"))
    factories.node("n", runtime="docker")
    source = session_service.create_session(
        ann_user,
        session_service.SessionRequest(
            entry="train.py",
            code_digest=hashlib.sha256(b"ann's code").hexdigest(),
            args="--lr 0.1",
            cpus=2.0,
        ),
        redis=None,
    )
    db.session.add(Checkpoint(session_id=source.id, name="final", digest="a" * 64, size=9))
    db.session.commit()
    ident = source.ident
    made = client.post(
        "/api/v1/competitions/toy/submissions/session",
        json={"session": ident},
        headers=setup["ann"],
    )
    assert made.status_code == 201, made.get_json()
    path = f"/api/v1/competitions/toy/submissions/{made.get_json()['id']}"
    record = client.get(path, headers=setup["ann"]).get_json()["provenance"]
    assert (record["session"], record["args"], record["cpus"]) == (ident, "--lr 0.1", 2.0)
    assert record["code_digest"] == hashlib.sha256(b"ann's code").hexdigest()
    assert record["checkpoint"]["name"] == "final" and record["checkpoint"]["digest"] == "a" * 64
    assert record["grading_session"].startswith("grade/")
    # The session is stopped and removed: the record stays, for the organiser too.
    session_service.request_stop(source)
    session_service.remove_session(source)
    seen = client.get(path, headers=setup["organiser"]).get_json()["provenance"]
    assert seen == record
    assert client.get(path, headers=setup["bob"]).status_code == 404  # not bob's team
