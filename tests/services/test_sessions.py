from datetime import timedelta

import pytest

from portal.errors import ApiError, Conflict, NotFound, Unauthorized
from portal.extensions import db
from portal.models import ApiToken, Session, SessionStatus
from portal.services import auth, metrics, sessions
from portal.services.lifecycle import finish, mark_running
from portal.timeutil import utcnow
from tests import factories


def test_session_ids_count_each_users_sessions(app):
    ada, bob = factories.user("ada"), factories.user("bob")
    assert [factories.session(ada).ident for _ in range(2)] == ["ada/1", "ada/2"]
    assert factories.session(bob).ident == "bob/1"


def test_another_users_session_is_not_found_but_an_admin_sees_it(app):
    ada, bob = factories.user("ada"), factories.user("bob")
    root = factories.user("root", admin=True)
    run = factories.session(ada)
    with pytest.raises(NotFound, match="no session ada/1"):
        sessions.find_session(bob, "ada/1")
    assert sessions.find_session(root, "ada/1").id == run.id
    assert sessions.find_session(ada, "1").id == run.id
    with pytest.raises(NotFound):
        sessions.find_session(ada, "ada/99")
    with pytest.raises(NotFound, match="USER/N"):
        sessions.find_session(ada, "ada/latest")


def test_a_request_no_node_could_hold_is_refused_and_nothing_is_stored(app):
    ada = factories.user("ada")
    factories.node("small", gpus=2, memory_mb=4096)
    with pytest.raises(ApiError, match="asks for 4 GPUs but the largest node has 2"):
        factories.session(ada, gpus=4)
    with pytest.raises(ApiError, match="memory"):
        factories.session(ada, memory_mb=8192)
    assert db.session.query(Session).count() == 0
    assert factories.session(ada, gpus=2).ident == "ada/1"


def test_stopping_a_pending_session_ends_it_at_once(app):
    ada = factories.user("ada")
    run = sessions.request_stop(factories.session(ada))
    assert run.state is SessionStatus.STOPPED and run.ended_at is not None
    with pytest.raises(Conflict, match="already ended"):
        sessions.request_stop(run)


def test_only_ended_sessions_can_be_removed_with_everything_they_hold(app):
    ada = factories.user("ada")
    run = factories.session(ada)
    with pytest.raises(Conflict, match="stop it first"):
        sessions.remove_session(run)
    sessions.append_logs(run, [{"seq": 0, "text": "hello"}])
    metrics.record(run, {"events": [{"tag": "loss", "step": 1, "value": 0.5, "wall_time": 1.0}]})
    finish(run, SessionStatus.COMPLETED, exit_code=0)
    sessions.remove_session(run)
    assert db.session.query(Session).count() == 0


def test_a_retried_log_batch_is_stored_once(app):
    run = factories.session(factories.user("ada"))
    batch = [{"seq": i, "text": f"line {i}"} for i in range(3)]
    assert sessions.append_logs(run, batch) == 3
    assert sessions.append_logs(run, [*batch, {"seq": 3, "text": "line 3"}]) == 1
    assert [line.text for line in sessions.read_logs(run, after=1)] == ["line 2", "line 3"]


def test_finishing_releases_gpus_and_revokes_the_session_token(app):
    ada = factories.user("ada")
    run = factories.session(ada)
    run.status = SessionStatus.SCHEDULED.value
    db.session.commit()
    secret = auth.issue_token(ada, ttl=timedelta(hours=1), session_id=run.id)
    mark_running(run)
    assert run.state is SessionStatus.RUNNING and run.started_at is not None
    assert finish(run, SessionStatus.FAILED, "exited with code 1", 1)
    assert not finish(run, SessionStatus.COMPLETED)  # a final state is final
    with pytest.raises(Unauthorized, match="revoked"):
        auth.resolve_token(secret)


def test_tokens_expired_revoked_and_forged_are_refused(app):
    ada = factories.user("ada")
    secret = factories.token(ada)
    assert auth.resolve_token(secret).user_id == ada.id
    with pytest.raises(Unauthorized, match="invalid token"):
        auth.resolve_token(secret[:-2] + "xx")
    token = db.session.query(ApiToken).one()
    token.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    with pytest.raises(Unauthorized, match="expired"):
        auth.resolve_token(secret)
    other = factories.token(ada)
    auth.revoke_token(auth.resolve_token(other))
    with pytest.raises(Unauthorized, match="revoked"):
        auth.resolve_token(other)


def test_passwords_are_hashed_and_checked(app):
    ada = factories.user("ada")
    assert "ada-password" not in ada.password_hash
    assert auth.authenticate("ada", "ada-password").id == ada.id
    with pytest.raises(Unauthorized, match="wrong username or password"):
        auth.authenticate("ada", "nope")
    with pytest.raises(Conflict):
        factories.user("ada")
    with pytest.raises(ApiError, match="username"):
        auth.create_user("Bad Name", "secret")
