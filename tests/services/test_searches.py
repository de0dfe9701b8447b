"""Hyperparameter searches: the driver starts trials as ordinary sessions, reads their
metric, stops weak ones (ASHA), replaces weak members from strong ones' checkpoints
(PBT), keeps to its budget, and ends; the API refuses what is wrong and changes
nothing. The sessions' runs are played by hand (the node agents are tested elsewhere):
their metric reported, their checkpoints saved, their ends recorded."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from portal.extensions import db
from portal.models import (
    Checkpoint,
    Search,
    SearchStatus,
    SearchTrial,
    Session,
    SessionStatus,
    TrialState,
)
from portal.services import metrics, searches
from portal.services import sessions as session_service
from portal.services.lifecycle import finish, mark_running
from tests import factories
from tests.api.test_api import code_archive

CODE = hashlib.sha256(b"search code").hexdigest()
SPACE = {"lr": {"loguniform": [0.001, 0.5]}, "hidden": {"int": [16, 128]}}


def request(**fields) -> session_service.SessionRequest:
    return session_service.SessionRequest(entry="train.py", code_digest=CODE, **fields)


def start(owner, **spec_fields) -> Search:
    spec = {
        "algorithm": "random",
        "metric": "valid/acc",
        "search": SPACE,
        "args": "--epochs 9",
        "budget": {"sessions": 4},
        "parallel": 2,
        **spec_fields,
    }
    return searches.start(owner, spec, request())


def report(session: Session, points: list[tuple[int, float]], tag: str = "valid/acc") -> None:
    metrics.record(
        session,
        {
            "scalars": {
                tag: {
                    "step": [s for s, _ in points],
                    "value": [v for _, v in points],
                    "wall_time": [float(s) for s, _ in points],
                }
            }
        },
    )


def running(search: Search) -> list[SearchTrial]:
    db.session.refresh(search)
    return [t for t in search.trials if t.state == TrialState.RUNNING.value]


def complete(trial: SearchTrial, value: float, step: int = 9) -> None:
    assert trial.session is not None
    report(trial.session, [(step, value)])
    finish(trial.session, SessionStatus.COMPLETED, "exit code 0", exit_code=0)


def test_a_random_search_runs_its_budget_two_at_a_time_and_keeps_the_best(app, redis):
    ada = factories.user("ada")
    search = start(ada)
    assert search.ident == "ada/search/1" and search.status == "running"
    assert searches.advance(search.id, redis)
    first = running(search)
    assert [t.number for t in first] == [1, 2]
    for trial in first:
        session = trial.session
        assert session is not None and session.user_id == ada.id
        assert session.state is SessionStatus.PENDING  # the scheduler places it like any other
        assert session.args == (
            f"--epochs 9 --lr {trial.params['lr']:.6g} --hidden {trial.params['hidden']}"
        )
        assert session.memo == f"ada/search/1: trial {trial.number}"
        assert session.code_digest == CODE and session.entry == "train.py"
    # Nothing more starts while two run.
    assert not searches.advance(search.id, redis)
    assert len(search.trials) == 2
    complete(first[0], 0.91)
    searches.advance(search.id, redis)
    assert [t.number for t in running(search)] == [2, 3]
    assert first[0].state == TrialState.DONE.value and first[0].value == 0.91
    assert (search.best_trial, search.best_value) == (1, 0.91)
    complete(first[1], 0.95)
    searches.advance(search.id, redis)
    assert [t.number for t in running(search)] == [3, 4]
    for trial in running(search):
        complete(trial, 0.5)
    searches.advance(search.id, redis)
    db.session.refresh(search)
    assert search.status == SearchStatus.DONE.value
    assert search.status_reason == "budget spent: 4 sessions"
    assert (search.best_trial, search.best_value) == (2, 0.95)
    assert len(search.trials) == 4  # never more than its budget
    body = searches.search_dict(search)
    assert body["best"] == {"trial": 2, "value": 0.95}
    assert body["trial_counts"] == {"done": 4}
    # Its sessions are ordinary sessions of its owner's.
    listed, _ = session_service.search_sessions(ada, session_service.SessionFilter())
    assert len(listed) == 4


def test_asha_promotes_the_best_configurations_rung_by_rung(app, redis):
    ada = factories.user("ada")
    search = start(
        ada,
        algorithm="asha",
        args="",
        asha={"min_steps": 1, "eta": 2, "max_steps": 4},
        budget={"sessions": 6},
        parallel=2,
    )
    searches.advance(search.id, redis)
    first, second = running(search)
    assert first.session is not None and first.session.args.endswith(" --epochs 1")
    assert first.session.memo == "ada/search/1: configuration 0, steps 1-1"
    segment_ends(first, 0.8, 1)
    segment_ends(second, 0.4, 1)
    searches.advance(search.id, redis)
    # Two at the bottom rung: the better half (one) goes on to step 2, from its
    # checkpoint; the other slot starts a new configuration.
    promoted, fresh = running(search)
    assert (promoted.member, promoted.parent_id, promoted.checkpoint) == (0, first.id, "1")
    assert promoted.params == first.params and promoted.rung == 2
    assert promoted.note == "promoted: in the top 1/2 at step 1"
    assert promoted.session is not None and promoted.session.args.endswith(" --epochs 2")
    assert promoted.session.forked_from == first.session.ident
    assert (fresh.member, fresh.parent_id, fresh.rung) == (2, None, 1)
    segment_ends(promoted, 0.85, 2)
    segment_ends(fresh, 0.6, 1)
    searches.advance(search.id, redis)
    # One at step 2 (fewer than eta: none goes on), three at step 1 (the top one went on
    # already): two new configurations, and the budget of six is spent.
    assert [(t.member, t.rung) for t in running(search)] == [(3, 1), (4, 1)]
    for trial, value in zip(running(search), (0.7, 0.3), strict=True):
        segment_ends(trial, value, 1)
    searches.advance(search.id, redis)
    db.session.refresh(search)
    assert search.status == "done" and search.status_reason == "budget spent: 6 sessions"
    states = {t.number: (t.state, t.note) for t in search.trials}
    assert states[3] == (
        "done",
        "at step 2 with fewer than 2 there: the budget ran out before it could go on",
    )
    assert states[5] == ("done", "in the top 1/2 at step 1: the budget ran out before it went on")
    for weak in (2, 4, 6):
        assert states[weak] == ("pruned", "stopped at step 1: not in the top 1/2 of the 5 there")
    assert states[1] == ("done", "")  # it went on (as trial 3)
    assert (search.best_trial, search.best_value) == (3, 0.85)


def segment_ends(trial: SearchTrial, value: float, step: int) -> None:
    """A PBT segment's session reports, saves a checkpoint at its last step, and ends."""
    assert trial.session is not None
    mark_running(trial.session)
    report(trial.session, [(step - 1, value - 0.05), (step, value)])
    db.session.add(Checkpoint(session_id=trial.session.id, name=str(step), digest="0" * 64, size=1))
    db.session.commit()
    finish(trial.session, SessionStatus.COMPLETED, "exit code 0", exit_code=0)


@pytest.mark.parametrize(("budget", "generations"), [(6, 3), (5, 2)])
def test_pbt_trains_in_segments_and_the_weak_go_on_from_the_strong(app, redis, budget, generations):
    ada = factories.user("ada")
    search = start(
        ada,
        algorithm="pbt",
        args="--momentum 0.9",
        parallel=2,
        budget={"sessions": budget},
        pbt={"interval": 3, "steps": 9, "quantile": 0.5},
        seed=7,
    )
    searches.advance(search.id, redis)
    strong, weak = running(search)
    assert (strong.member, weak.member, strong.rung) == (0, 1, 3)
    assert strong.session is not None and strong.session.args.endswith(" --epochs 3")
    assert strong.session.args.startswith("--momentum 0.9 --lr ")
    segment_ends(strong, 0.9, 3)
    searches.advance(search.id, redis)
    assert len(search.trials) == 2  # the generation waits for every member
    segment_ends(weak, 0.6, 3)
    searches.advance(search.id, redis)
    db.session.refresh(search)
    assert (strong.state, weak.state) == ("done", "done")
    own, taken = running(search)
    assert (own.member, own.parent_id, own.checkpoint, own.rung) == (0, strong.id, "3", 6)
    assert own.params == strong.params and own.note == "from its own checkpoint 3 (0.9)"
    # The weak member goes on from the strong one's checkpoint, its rates perturbed.
    assert (taken.member, taken.parent_id, taken.checkpoint) == (1, strong.id, "3")
    assert taken.note == "from member 0's checkpoint 3 (0.9)"
    for name, value in taken.params.items():
        assert value != strong.params[name]
    session = taken.session
    assert session is not None and strong.session is not None
    assert session.forked_from == strong.session.ident and session.resume_checkpoint == "3"
    assert session.args.endswith(" --epochs 6")
    assert session.memo == "ada/search/1: member 1, steps 4-6"
    copied = db.session.query(Checkpoint).filter_by(session_id=session.id).all()
    assert [c.name for c in copied] == ["3"]  # the strong one's
    body = searches.search_dict(search)
    assert [(t["number"], t["member"], t["parent"]) for t in body["trials"]] == [
        (1, 0, None),
        (2, 1, None),
        (3, 0, 1),
        (4, 1, 1),
    ]
    chains = searches.lineage(search)
    assert [[(s["trial"], s["exploited"]) for s in c["segments"]] for c in chains] == [
        [(1, False), (3, False)],
        [(2, False), (4, True)],
    ]
    assert chains[1]["segments"][1]["from_member"] == 0
    segment_ends(own, 0.92, 6)
    segment_ends(taken, 0.95, 6)
    searches.advance(search.id, redis)
    if generations == 3:
        third = running(search)
        assert [(t.member, t.rung, t.parent_id) for t in third] == [
            (0, 9, taken.id),  # now member 0 is the weaker
            (1, 9, taken.id),
        ]
        for trial in third:
            segment_ends(trial, 0.97, 9)
        searches.advance(search.id, redis)
    db.session.refresh(search)
    assert search.status == "done"
    assert search.status_reason == (
        "every member reached step 9"
        if generations == 3
        else "budget spent: 4 sessions, members at step 6"
    )
    assert len(search.trials) == 2 * generations <= budget


def test_stopping_a_search_stops_its_sessions(app, client, redis):
    ada = factories.user("ada")
    search = start(ada)
    searches.advance(search.id, redis)
    trials = running(search)
    bob = factories.user("bob")
    path = "/api/v1/searches/ada/1/stop"
    refused = client.post(path, headers=factories.headers(factories.token(bob)))
    assert refused.status_code == 404
    answer = client.post(path, headers=factories.headers(factories.token(ada)))
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["status"] == "stopped"
    for trial in trials:
        db.session.refresh(trial)
        assert trial.state == TrialState.STOPPED.value
        assert trial.session is not None and trial.session.state is SessionStatus.STOPPED
    assert not searches.advance(search.id, redis)  # a stopped search starts nothing
    again = client.post(path, headers=factories.headers(factories.token(ada)))
    assert again.status_code == 409


def test_a_search_whose_trials_all_fail_gives_up(app, redis):
    ada = factories.user("ada")
    search = start(ada, budget={"sessions": 10})
    for _ in range(3):
        searches.advance(search.id, redis)
        for trial in running(search):
            assert trial.session is not None
            finish(trial.session, SessionStatus.FAILED, "exit code 1", exit_code=1)
    searches.advance(search.id, redis)
    db.session.refresh(search)
    assert search.status == SearchStatus.FAILED.value
    assert search.status_reason.startswith("its first 4 trials failed: ada/1 failed: exit code 1")
    assert len(search.trials) == 4  # not the ten of its budget


def test_the_wall_time_budget_stops_what_runs(app, redis):
    ada = factories.user("ada")
    search = start(ada, budget={"minutes": 30})
    searches.advance(search.id, redis)
    trials = running(search)
    report(trials[0].session, [(2, 0.7)])  # type: ignore[arg-type]
    search.created_at -= timedelta(minutes=31)
    db.session.commit()
    searches.advance(search.id, redis)
    db.session.refresh(search)
    assert search.status == "done" and search.status_reason == "budget spent: 30 minutes"
    assert {t.state for t in trials} == {TrialState.STOPPED.value}
    assert search.best_value == 0.7


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"search": {}}, "the search space is empty"),
        ({"algorithm": "bogus"}, "unknown algorithm 'bogus'"),
        ({"budget": {"sessions": 0}}, "budget.sessions must be above 0"),
        ({"budget": {"gpu_hours": 2}}, "a budget in GPU-hours needs sessions with GPUs"),
    ],
)
def test_the_api_refuses_a_bad_search_and_keeps_nothing(app, client, redis, spec, says):
    ada = factories.user("ada")
    secret = factories.token(ada)
    archive = code_archive({"train.py": "print('hi')\n"})
    uploaded = client.put("/api/v1/code", data=archive, headers=factories.headers(secret))
    assert uploaded.status_code == 201, uploaded.get_json()
    body = {
        "entry": "train.py",
        "code_digest": uploaded.get_json()["digest"],
        "spec": {
            "metric": "valid/acc",
            "search": SPACE,
            "budget": {"sessions": 2},
            **spec,
        },
    }
    answer = client.post("/api/v1/searches", json=body, headers=factories.headers(secret))
    assert answer.status_code == 400, answer.get_json()
    assert says in answer.get_json()["error"]["message"]
    assert db.session.query(Search).count() == 0
    # The same with a good spec starts it; a session's token cannot.
    body["spec"] = {"metric": "valid/acc", "search": SPACE, "budget": {"sessions": 2}}
    started = client.post("/api/v1/searches", json=body, headers=factories.headers(secret))
    assert started.status_code == 201, started.get_json()
    assert started.get_json()["id"] == "ada/search/1"
    listed = client.get("/api/v1/searches", headers=factories.headers(secret)).get_json()
    assert [s["id"] for s in listed] == ["ada/search/1"]
    unknown = client.post(
        "/api/v1/searches",
        json={**body, "code_digest": "f" * 64},
        headers=factories.headers(secret),
    )
    assert unknown.status_code == 400 and unknown.get_json()["error"]["code"] == "unknown_code"
