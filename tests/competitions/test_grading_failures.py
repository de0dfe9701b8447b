"""Infrastructure failures never cost a participant: a grading session the platform
failed (its node lost, its container never started) is started again, a bounded number
of times, and a submission the platform never managed to grade counts against no quota.
The submitted code's own failure counts."""

from __future__ import annotations

import io

from portal.api.code import artifact_store
from portal.extensions import db
from portal.models import Checkpoint, Notification, Submission
from portal.services import sessions as session_service
from portal.services.competitions import submissions
from scheduler.loop import Scheduler
from tests import factories
from tests.api.test_api import code_archive
from tests.competitions.test_competitions_api import setup  # noqa: F401
from tests.competitions.test_reproductions import INTERNAL, TOY, named, state


def submitted(client, app, redis, headers) -> tuple[Submission, dict]:
    """ann's model submission, its grading session placed on node n."""
    _, secret = factories.node("n", runtime="docker")
    digest, size = artifact_store().put(
        io.BytesIO(code_archive({"train.py": "print('training')"})), max_bytes=2**20
    )
    source = session_service.create_session(
        named("ann"),
        session_service.SessionRequest(entry="train.py", code_digest=digest, code_bytes=size),
    )
    db.session.add(Checkpoint(session_id=source.id, name="final", digest="a" * 64, size=9))
    db.session.commit()
    made = client.post(
        f"{TOY}/submissions/session", json={"session": source.ident}, headers=headers
    )
    assert made.status_code == 201, made.get_json()
    Scheduler(app, redis).run_pass()
    return db.session.get(Submission, made.get_json()["id"]), factories.headers(secret)


def test_a_grading_the_platform_failed_is_tried_again_then_not_counted(
    setup,  # noqa: F811
    app,
    client,
    redis,
):
    submission, node = submitted(client, app, redis, setup["ann"])
    seen = []
    for attempt in (1, 2, 3):
        db.session.refresh(submission)
        assert submission.grading_attempts == attempt
        grading_id = submission.grading_session_id
        seen.append(grading_id)
        state(client, node, grading_id, "running")
        # The node's agent restarts and no longer runs it, or it could not start.
        failure = "lost" if attempt < 3 else "failed"
        state(client, node, grading_id, failure, reason="could not start: no such image")
        Scheduler(app, redis).run_pass()
    assert len(set(seen)) == 3  # a new grading session each time
    shown = client.get(f"{TOY}/submissions/{submission.id}", headers=setup["ann"]).get_json()
    assert shown["status"] == "errored" and shown["grading_attempts"] == 3
    assert "does not count against your quota" in shown["error"]
    assert submissions.quota(submission.team, submission.round)["used"] == 0
    told = db.session.scalars(
        db.select(Notification.subject).where(Notification.kind == "submission_failed")
    ).all()
    assert told == [f"Submission {submission.id} failed"]  # once, at the end


def test_the_submitted_code_failing_counts_and_is_not_tried_again(
    setup,  # noqa: F811
    app,
    client,
    redis,
):
    submission, node = submitted(client, app, redis, setup["ann"])
    grading_id = submission.grading_session_id
    state(client, node, grading_id, "running")
    state(client, node, grading_id, "failed", exit_code=1, reason="exited with code 1")
    db.session.refresh(submission)
    assert (submission.status, submission.grading_attempts) == ("failed", 1)
    assert submission.grading_session_id == grading_id
    assert submissions.quota(submission.team, submission.round)["used"] == 1
    assert client.get(f"{INTERNAL}/{grading_id}/spec", headers=node).status_code == 200


def test_a_grading_killed_over_the_gpu_share_it_was_given_is_graded_on_a_whole_gpu(
    setup,  # noqa: F811
    app,
    client,
    redis,
):
    """The platform grades a model trained on one GPU on a quarter of one; a model that
    needs more is killed by its node, and graded again on a whole GPU, not failed."""
    from portal.models import Session

    _, secret = factories.node("n", runtime="docker", gpus=1)
    node = factories.headers(secret)
    digest, size = artifact_store().put(
        io.BytesIO(code_archive({"train.py": "print('training')"})), max_bytes=2**20
    )
    source = session_service.create_session(
        named("ann"),
        session_service.SessionRequest(
            entry="train.py", code_digest=digest, code_bytes=size, gpus=1
        ),
    )
    db.session.add(Checkpoint(session_id=source.id, name="final", digest="a" * 64, size=9))
    db.session.commit()
    made = client.post(
        f"{TOY}/submissions/session", json={"session": source.ident}, headers=setup["ann"]
    )
    assert made.status_code == 201, made.get_json()
    Scheduler(app, redis).run_pass()
    submission = db.session.get(Submission, made.get_json()["id"])
    first = db.session.get(Session, submission.grading_session_id)
    assert (first.gpus, first.gpu_milli) == (0, 250)
    state(client, node, first.id, "running")
    state(
        client,
        node,
        first.id,
        "killed",
        reason="it held 9000 MiB of GPU 0's memory, more than its share of 0.25 "
        "(4096 MiB, and 1024 MiB for CUDA's own)",
    )
    db.session.refresh(submission)
    again = db.session.get(Session, submission.grading_session_id)
    assert again.id != first.id and (again.gpus, again.gpu_milli) == (1, 0)
    assert submission.status == "grading" and "too small" in submission.error
    # Killed on a whole GPU, it is the code's own failure.
    Scheduler(app, redis).run_pass()
    state(client, node, again.id, "running")
    state(client, node, again.id, "killed", reason="out of memory: it used more than 1024 MiB")
    db.session.refresh(submission)
    assert submission.status == "failed"
