"""An organiser re-runs a model submission's training from its record and sees the
original and reproduced scores side by side; through the API and the node's routes."""

from __future__ import annotations

import io

import pytest

from grader import jobs
from portal.api.code import artifact_store
from portal.extensions import db
from portal.models import (
    Checkpoint,
    Notification,
    Reproduction,
    Session,
    SessionKind,
    Submission,
    User,
)
from portal.services import credits
from portal.services import sessions as session_service
from portal.services.competitions import submissions
from scheduler.loop import Scheduler
from tests import factories
from tests.api.test_api import code_archive
from tests.competitions.test_competitions_api import score_all, setup, submit  # noqa: F401

TOY = "/api/v1/competitions/toy"
INTERNAL = "/api/v1/internal/sessions"


def named(username: str) -> User:
    return db.session.scalar(db.select(User).where(User.username == username))


@pytest.fixture
def model_submission(setup, app, client, redis):  # noqa: F811
    """ann's training session with a stored code archive and a checkpoint, submitted to
    toy and graded through the node's routes (30 of 40 rows right); and the node."""
    store = artifact_store()
    _, secret = factories.node("n", runtime="docker")
    digest, size = store.put(
        io.BytesIO(code_archive({"train.py": "print('training')"})), max_bytes=2**20
    )
    source = session_service.create_session(
        named("ann"),
        session_service.SessionRequest(
            entry="train.py", code_digest=digest, code_bytes=size, args="--lr 0.1"
        ),
    )
    db.session.add(Checkpoint(session_id=source.id, name="final", digest="a" * 64, size=9))
    db.session.commit()
    made = client.post(
        f"{TOY}/submissions/session", json={"session": source.ident}, headers=setup["ann"]
    )
    assert made.status_code == 201, made.get_json()
    node = factories.headers(secret)
    submission = db.session.get(Submission, made.get_json()["id"])
    predict(app, client, redis, node, submission.grading_session_id, setup["files"], 30)
    score_all(app, redis)
    assert db.session.get(Submission, submission.id).public_score is not None
    return {**setup, "submission": submission.id, "source": source.ident, "node": node}


def predict(app, client, redis, node, session_id: int, files, correct: int) -> None:
    """The node runs a grading session that writes these predictions."""
    Scheduler(app, redis).run_pass()
    ran = client.post(f"{INTERNAL}/{session_id}/state", json={"status": "running"}, headers=node)
    assert ran.status_code == 200, ran.get_json()
    written = client.put(
        f"{INTERNAL}/{session_id}/predictions",
        data=factories.predictions(files, correct),
        headers={**node, "Content-Type": "text/csv"},
    )
    assert written.get_json() == {"accepted": 1}
    ended = client.post(
        f"{INTERNAL}/{session_id}/state",
        json={"status": "completed", "exit_code": 0},
        headers=node,
    )
    assert ended.status_code == 200


def state(client, node, session_id: int, status: str, **extra) -> None:
    response = client.post(
        f"{INTERNAL}/{session_id}/state", json={"status": status, **extra}, headers=node
    )
    assert response.status_code == 200, response.get_json()


def counts() -> tuple[int, int]:
    return (
        db.session.scalar(db.select(db.func.count(Reproduction.id))),
        db.session.scalar(db.select(db.func.count(Session.id))),
    )


def test_the_reproduced_scores_stand_beside_the_original(model_submission, app, client, redis):
    ms = model_submission
    submission_id = ms["submission"]
    path = f"{TOY}/submissions/{submission_id}/reproductions"
    ann_numbers = named("ann").next_session_number
    # Only organisers; an unknown submission and a file submission are refused, and
    # nothing is created.
    before = counts()
    refused = client.post(path, headers=ms["bob"])
    assert refused.status_code == 403
    assert client.post(path, headers=ms["ann"]).status_code == 403  # not even the team's own
    unknown = client.post(f"{TOY}/submissions/999/reproductions", headers=ms["organiser"])
    assert unknown.status_code == 404
    assert "no submission 999" in unknown.get_json()["error"]["message"]
    filed = submit(client, ms["cid"], factories.predictions(ms["files"], 10))
    assert filed.status_code == 201
    file_path = f"{TOY}/submissions/{filed.get_json()['id']}/reproductions"
    as_file = client.post(file_path, headers=ms["organiser"])
    assert as_file.status_code == 422
    assert as_file.get_json()["error"]["code"] == "not_reproducible"
    assert counts() == before

    made = client.post(path, headers=ms["organiser"])
    assert made.status_code == 201, made.get_json()
    body = made.get_json()
    assert body["status"] == "training" and body["training_session"].startswith("reproduce/")
    assert (
        body["original"]["public_score"] is not None and body["reproduced"]["public_score"] is None
    )
    # The re-run is the team's own code as the team's session (their rights, not the
    # organiser's), exactly as submitted, paid by the organiser, and takes no number.
    rerun = db.session.get(Session, int(body["training_session"].split("/")[1]))
    source = session_service.find_session(named("ann"), ms["source"])
    assert (rerun.user.username, rerun.kind) == ("ann", SessionKind.REPRODUCTION.value)
    assert (rerun.entry, rerun.args, rerun.code_digest) == (
        source.entry,
        source.args,
        source.code_digest,
    )
    assert named("ann").next_session_number == ann_numbers
    assert credits.payer(rerun)[0].username == "olga"
    # One at a time; the team cannot submit the organiser's re-run.
    again = client.post(path, headers=ms["organiser"])
    assert again.status_code == 409 and "still training" in again.get_json()["error"]["message"]
    resubmitted = client.post(
        f"{TOY}/submissions/session", json={"session": rerun.ident}, headers=ms["ann"]
    )
    assert resubmitted.status_code == 400
    assert "organiser's reproduction" in resubmitted.get_json()["error"]["message"]

    # The node runs it; it saves the very checkpoint; it is graded (20 of 40 right now).
    Scheduler(app, redis).run_pass()
    state(client, ms["node"], rerun.id, "running")
    printed = client.post(
        f"{INTERNAL}/{rerun.id}/logs",
        json={"lines": [{"seq": 0, "text": "epoch 1"}, {"seq": 1, "text": "done"}]},
        headers=ms["node"],
    )
    assert printed.status_code == 200, printed.get_json()
    db.session.add(Checkpoint(session_id=rerun.id, name="final", digest="a" * 64, size=9))
    db.session.commit()
    state(client, ms["node"], rerun.id, "completed", exit_code=0)
    reproduction_path = f"{TOY}/reproductions/{body['id']}"
    grading = client.get(reproduction_path, headers=ms["organiser"]).get_json()
    assert grading["status"] == "grading" and grading["grading_session"].startswith("grade/")
    grader_id = int(grading["grading_session"].split("/")[1])
    assert credits.payer(db.session.get(Session, grader_id))[0].username == "olga"
    Scheduler(app, redis).run_pass()
    spec = client.get(f"{INTERNAL}/{grader_id}/spec", headers=ms["node"]).get_json()
    assert spec["grading"]["checkpoint_digest"] == "a" * 64
    predict(app, client, redis, ms["node"], grader_id, ms["files"], 20)
    reproduction = db.session.scalar(db.select(Reproduction))
    assert jobs.process_reproduction(reproduction.id, artifact_store()) == "scored"

    shown = client.get(reproduction_path, headers=ms["organiser"]).get_json()
    original = db.session.get(Submission, submission_id)
    assert shown["status"] == "scored" and shown["same_checkpoint"] is True
    assert shown["log_tail"] == ["epoch 1", "done"]  # the organiser reads what it printed
    assert shown["original"]["public_score"] == original.public_score
    assert shown["reproduced"]["private_score"] is not None
    for board in ("public_score", "private_score"):
        assert shown["difference"][board] == pytest.approx(
            shown["reproduced"][board] - shown["original"][board]
        )
    assert shown["difference"]["public_score"] < 0  # 20 right where 30 were
    listed = client.get(f"{TOY}/reproductions", headers=ms["organiser"]).get_json()
    assert [r["id"] for r in listed] == [body["id"]]
    assert client.get(f"{TOY}/reproductions", headers=ms["ann"]).status_code == 403
    # It counts against no quota and reaches no board; the organiser is told.
    round_ = original.round
    assert submissions.quota(original.team, round_)["used"] == 1
    board = client.get(f"{TOY}/leaderboard").get_json()["rows"]
    assert [(row["score"], row["submissions"]) for row in board if row["team"] == "ann"] == [
        (original.public_score, 1)
    ]
    told = db.session.scalar(db.select(Notification).where(Notification.kind == "reproduction"))
    assert told.user_id == named("olga").id and "reproduced" in told.subject


def test_a_reproduction_that_cannot_finish_says_why(model_submission, app, client, redis):
    ms = model_submission
    path = f"{TOY}/submissions/{ms['submission']}/reproductions"
    # Stopped by the organiser before it was placed.
    first = client.post(path, headers=ms["organiser"]).get_json()
    stopped = client.post(f"{TOY}/reproductions/{first['id']}/stop", headers=ms["organiser"])
    assert stopped.status_code == 200
    assert stopped.get_json()["status"] == "failed"
    assert "stopped by olga" in stopped.get_json()["error"]
    assert (
        client.post(f"{TOY}/reproductions/{first['id']}/stop", headers=ms["organiser"]).status_code
        == 409
    )
    # A re-run that fails, and one that completes without saving a checkpoint.
    for outcome, error in (
        ("failed", "the re-run failed: exit 3"),
        ("completed", "without saving"),
    ):
        made = client.post(path, headers=ms["organiser"]).get_json()
        rerun_id = int(made["training_session"].split("/")[1])
        Scheduler(app, redis).run_pass()
        state(client, ms["node"], rerun_id, "running")
        state(client, ms["node"], rerun_id, outcome, exit_code=3, reason="exit 3")
        shown = client.get(f"{TOY}/reproductions/{made['id']}", headers=ms["organiser"]).get_json()
        assert shown["status"] == "failed" and error in shown["error"], shown
    # Its code no longer stored: refused, nothing created.
    rerun = db.session.get(Session, rerun_id)
    artifact_store().path(rerun.code_digest).unlink()
    before = counts()
    gone = client.post(path, headers=ms["organiser"])
    assert gone.status_code == 409 and "no longer stored" in gone.get_json()["error"]["message"]
    assert counts() == before


def test_a_resumed_submission_runs_again_from_the_checkpoint_it_started_from(
    setup,  # noqa: F811
    app,
    client,
    redis,
):
    store = artifact_store()
    factories.node("n", runtime="docker")
    digest, _ = store.put(
        io.BytesIO(code_archive({"train.py": "print('training')"})), max_bytes=2**20
    )
    start_digest, _ = store.put(io.BytesIO(b"the first run's weights"), max_bytes=2**20)
    ann = named("ann")
    first = session_service.create_session(
        ann, session_service.SessionRequest(entry="train.py", code_digest=digest)
    )
    db.session.add(Checkpoint(session_id=first.id, name="2", digest=start_digest, size=23))
    db.session.commit()
    resumed = session_service.fork(ann, first, args="--more", checkpoint="2", store=store)
    db.session.add(Checkpoint(session_id=resumed.id, name="4", digest="b" * 64, size=9))
    db.session.commit()
    made = client.post(
        f"{TOY}/submissions/session", json={"session": f"{resumed.ident}:4"}, headers=setup["ann"]
    ).get_json()
    record = made["provenance"]
    assert record["start_checkpoint"]["digest"] == start_digest
    body = client.post(
        f"{TOY}/submissions/{made['id']}/reproductions", headers=setup["organiser"]
    ).get_json()
    rerun = db.session.get(Session, int(body["training_session"].split("/")[1]))
    assert (rerun.args, rerun.resume_checkpoint, rerun.forked_from) == (
        "--more",
        "2",
        resumed.ident,
    )
    copied = db.session.scalars(db.select(Checkpoint).where(Checkpoint.session_id == rerun.id))
    assert [(c.name, c.digest) for c in copied] == [("2", start_digest)]


def test_the_team_cannot_stop_feed_or_fork_its_reproduction(model_submission, app, client):
    ms = model_submission
    body = client.post(
        f"{TOY}/submissions/{ms['submission']}/reproductions", headers=ms["organiser"]
    ).get_json()
    owner, number = body["training_session"].split("/")
    path = f"/api/v1/sessions/{owner}/{number}"
    ann = ms["ann"]
    assert client.get(path, headers=ann).status_code == 200  # the team sees it run
    for method, suffix, extra in (
        ("post", "/stop", {"json": {}}),
        ("put", "/checkpoints/final", {"data": b"weights", "content_type": "application/gzip"}),
        ("patch", "", {"json": {"memo": "mine"}}),
        ("post", "/exec", {"json": {"command": ["id"]}}),
    ):
        refused = getattr(client, method)(path + suffix, headers=ann, **extra)
        assert refused.status_code == 403, (suffix, refused.get_json())
    forked = client.post(path + "/fork", json={}, headers=ann)
    assert (
        forked.status_code == 403 and "fork the training" in forked.get_json()["error"]["message"]
    )
    # Other users do not see it at all; the re-run's own code may save its checkpoints.
    assert client.get(path, headers=ms["bob"]).status_code == 404
    rerun = db.session.get(Session, int(number))
    from datetime import timedelta

    from portal.services import auth

    own_token = auth.issue_token(
        rerun.user, ttl=timedelta(hours=1), label="session", session_id=rerun.id
    )
    saved = client.put(
        path + "/checkpoints/1",
        data=code_archive({"weights": "its own"}),
        headers={**factories.headers(own_token), "Content-Type": "application/gzip"},
    )
    assert saved.status_code in (200, 201), saved.get_json()


def test_a_reproduction_stops_when_the_organiser_s_credit_is_spent(
    model_submission, app, client, redis
):
    from portal.services import credits

    ms = model_submission
    body = client.post(
        f"{TOY}/submissions/{ms['submission']}/reproductions", headers=ms["organiser"]
    ).get_json()
    rerun_id = int(body["training_session"].split("/")[1])
    Scheduler(app, redis).run_pass()
    state(client, ms["node"], rerun_id, "running")
    app.config.update(CREDIT_CPU_HOUR=1.0, CREDIT_GRACE_SECONDS=0)
    named("olga").credit = 0.0
    named("ann").credit = 100.0  # the team's credit does not pay for it
    db.session.commit()
    assert credits.enforce(redis) == []  # the grace starts
    stopped = credits.enforce(redis)
    assert [s.id for s in stopped] == [rerun_id]
    rerun = db.session.get(Session, rerun_id)
    assert rerun.stop_requested and "olga, who pays for it, has none left" in rerun.stop_reason


def test_a_reproduction_waits_in_the_organiser_s_fair_share(
    model_submission, app, client, redis, monkeypatch
):
    from scheduler import loop

    ms = model_submission
    body = client.post(
        f"{TOY}/submissions/{ms['submission']}/reproductions", headers=ms["organiser"]
    ).get_json()
    rerun_id = int(body["training_session"].split("/")[1])
    seen: dict = {}
    planned = loop.plan

    def spy(admitted, *args, **kwargs):
        seen.update({p.key: p.user for p in admitted})
        return planned(admitted, *args, **kwargs)

    monkeypatch.setattr(loop, "plan", spy)
    Scheduler(app, redis).run_pass()
    assert seen[rerun_id] == "olga"  # not ann, whose code it runs
