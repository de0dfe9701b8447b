"""Participants are told: a submission scored, failed or disqualified, an invitation to a
team, a round opening and ending; in the portal's notifications (and by e-mail where the
site sends it, through the same outbox as every alert)."""

from __future__ import annotations

from datetime import timedelta

from portal.extensions import db
from portal.models import Round
from portal.services.competitions import announcements
from portal.timeutil import utcnow
from tests import factories
from tests.competitions.test_competitions_api import score_all, setup, submit  # noqa: F401

URL = "/api/v1/competitions/toy"


def told(client, headers, kind=None) -> list[dict]:
    body = client.get("/api/v1/notifications", headers=headers).get_json()
    return [n for n in body["notifications"] if kind is None or n["kind"] == kind]


def test_a_team_is_told_its_submissions_outcomes(setup, app, client, redis):  # noqa: F811
    ann, bob = setup["ann"], setup["bob"]
    client.post(f"{URL}/teams", json={"name": "owls"}, headers=ann)
    client.post(f"{URL}/team/invites", json={"username": "bob"}, headers=ann)
    [invitation] = told(client, bob, "team_invitation")
    assert invitation["subject"] == "ann invited you to owls" and "Toy" in invitation["body"]
    client.post(f"{URL}/team/join", json={"team": "owls"}, headers=bob)
    first = submit(client, ann, factories.predictions(setup["files"], 30)).get_json()
    score_all(app, redis)
    for member in (ann, bob):  # both of the team, nobody else
        [scored] = told(client, member, "submission_scored")
        assert scored["subject"].startswith(f"Submission {first['id']} scored")
        assert scored["link"] == "/competitions/toy"
    assert told(client, setup["cid"]) == []
    score_all(app, redis)  # scored again: nobody is told twice
    assert len(told(client, ann, "submission_scored")) == 1
    reason = {"reason": "hand-labelled the test set"}
    client.post(
        f"{URL}/submissions/{first['id']}/disqualify", json=reason, headers=setup["organiser"]
    )
    [out] = told(client, bob, "submission_disqualified")
    assert "hand-labelled the test set" in out["body"]


def test_entrants_are_told_when_a_round_opens_and_ends_once(setup, app, client, redis):  # noqa: F811
    ann = setup["ann"]
    client.post(f"{URL}/teams", json={"name": "owls"}, headers=ann)
    round_ = db.session.scalar(db.select(Round))
    assert announcements.announce_rounds() == 1  # opened an hour ago; ann has entered
    assert announcements.announce_rounds() == 0
    [opened] = told(client, ann, "round_opened")
    assert opened["subject"] == "Toy: round 1 (Round 1) opened"
    round_.ends_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert announcements.announce_rounds() == 1
    assert [n["subject"] for n in told(client, ann, "round_ended")] == [
        "Toy: round 1 (Round 1) ended"
    ]
    assert told(client, setup["bob"]) == []  # not an entrant


def test_rounds_long_past_are_marked_not_announced(setup, app, client, redis):  # noqa: F811
    client.post(f"{URL}/teams", json={"name": "owls"}, headers=setup["ann"])
    round_ = db.session.scalar(db.select(Round))
    round_.starts_at = utcnow() - timedelta(days=3)
    db.session.commit()
    assert announcements.announce_rounds() == 0
    assert round_.opened_told and not round_.ended_told
