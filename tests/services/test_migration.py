"""Migration on drain: the sessions of a node drained with `migrate` checkpoint, stop,
and go on elsewhere as linked sessions; those that bound no `save` finish in place."""

from __future__ import annotations

from datetime import timedelta

from portal import node_work
from portal.extensions import db
from portal.models import Checkpoint, Notification, Session, SessionStatus
from portal.services import migration
from portal.services.lifecycle import finish, mark_running
from portal.timeutil import utcnow
from scheduler.loop import Scheduler
from tests import factories


def running_on(app, redis, owner, node: str, **fields) -> Session:
    session = factories.session(owner, gpus=1)
    for name, value in fields.items():
        setattr(session, name, value)
    db.session.commit()
    Scheduler(app, redis).run_pass()
    assert session.node is not None and session.node.name == node, session.status_reason
    mark_running(session)
    db.session.commit()
    return session


def test_a_drain_with_migrate_moves_what_saves_and_leaves_the_rest(app, client, redis):
    ada = factories.user("ada")
    root = factories.user("root", admin=True)
    factories.node("old", gpus=2)
    saving = running_on(app, redis, ada, "old", saves_on_signal=True, args="--lr 0.1")
    plain = running_on(app, redis, ada, "old")
    factories.node("new", gpus=2)
    node_work.take(redis, "old")  # the starts

    answer = client.post(
        "/api/v1/nodes/old/drain",
        json={"migrate": True},
        headers=factories.headers(factories.token(root)),
    )
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["status"] == "drained"
    assert body["migrating"] == [saving.ident] and body["left_to_finish"] == [plain.ident]
    jobs = node_work.take(redis, "old")
    assert [(j["kind"], j["session_id"]) for j in jobs] == [("checkpoint", saving.id)]

    # Nothing moves before the checkpoint is there.
    assert migration.advance(redis) == []
    db.session.add(Checkpoint(session_id=saving.id, name="signal-40", digest="0" * 64, size=1))
    db.session.commit()
    [moved] = migration.advance(redis)
    assert moved.forked_from == saving.ident and moved.resume_checkpoint == "signal-40"
    assert moved.args == "--lr 0.1" and moved.gpus == 1
    assert (
        moved.memo == f"migrated from {saving.ident} (node old drained), from checkpoint signal-40"
    )
    assert saving.stop_requested
    assert saving.stop_reason == f"migrated: node old is drained; it goes on as {moved.ident}"
    assert [j["kind"] for j in node_work.take(redis, "old")] == ["stop"]
    told = db.session.query(Notification).filter_by(kind="session_migrated").one()
    assert told.user_id == ada.id
    assert told.subject == f"Session {saving.ident} moved to {moved.ident}"
    finish(saving, SessionStatus.STOPPED, saving.stop_reason)
    assert saving.status_reason == saving.stop_reason
    # The drained node takes nothing new: the moved session starts on the other.
    Scheduler(app, redis).run_pass()
    assert moved.state is SessionStatus.SCHEDULED and moved.node.name == "new"
    # The one without `save` runs on where it was, and is not moved later.
    assert plain.state is SessionStatus.RUNNING and not plain.stop_requested
    assert migration.advance(redis) == []


def test_a_session_that_saves_nothing_in_time_is_left_to_finish(app, redis):
    from portal.models import Node
    from portal.services.nodes import set_drained

    ada = factories.user("ada")
    factories.node("old", gpus=1)
    silent = running_on(app, redis, ada, "old", saves_on_signal=True)
    asked = utcnow()
    assert set_drained("old", True, migrate=True, redis=redis)["migrating"] == [silent.ident]
    assert db.session.query(Node).filter_by(name="old").one().status == "drained"
    # An old checkpoint does not count: only one saved since it was asked.
    db.session.add(
        Checkpoint(
            session_id=silent.id,
            name="before",
            digest="0" * 64,
            size=1,
            created_at=asked - timedelta(minutes=5),
        )
    )
    db.session.commit()
    assert migration.advance(redis, asked + timedelta(seconds=10)) == []
    assert silent.migrating_since is not None
    assert migration.advance(redis, asked + timedelta(seconds=301)) == []
    assert silent.migrating_since is None and not silent.stop_requested


def test_migrate_only_goes_with_a_drain(app, client, redis):
    root = factories.user("root", admin=True)
    factories.node("n", gpus=1)
    answer = client.post(
        "/api/v1/nodes/n/drain",
        json={"drained": False, "migrate": True},
        headers=factories.headers(factories.token(root)),
    )
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "invalid_input"


def test_a_session_is_moved_once_and_an_undrain_calls_the_move_off(app, redis):
    from portal.services.nodes import set_drained

    ada = factories.user("ada")
    factories.node("old", gpus=2)
    first = running_on(app, redis, ada, "old", saves_on_signal=True)
    second = running_on(app, redis, ada, "old", saves_on_signal=True)
    factories.node("new", gpus=2)
    set_drained("old", True, migrate=True, redis=redis)
    asked = first.migrating_since
    assert asked is not None
    for session in (first, second):
        db.session.add(Checkpoint(session_id=session.id, name="signal-1", digest="0" * 64, size=1))
    db.session.commit()
    # Two housekeepers (a leader and the one taking over) reach the same session: the
    # claim lets one move it.
    assert migration._move(first, asked, "signal-1", redis) is not None
    assert migration._move(first, asked, "signal-1", redis) is None
    assert db.session.query(Session).filter_by(forked_from=first.ident).count() == 1
    # Undrained before it moved: the second stays, checkpoint or not.
    set_drained("old", False)
    assert second.migrating_since is None
    assert migration.advance(redis) == []
    assert not second.stop_requested
    assert db.session.query(Session).filter_by(forked_from=second.ident).count() == 0
