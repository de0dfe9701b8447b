"""Collaboration teams are joined by consent: a member invites, and only the invited user
turns the invitation into membership. Members read and fork each other's sessions, so
until then, and from the moment one leaves, nothing is shared."""

import pytest

from tests import factories
from tests.api.test_api import code_archive
from tests.competitions.test_competitions_api import create as create_competition

VERA_1 = "/api/v1/sessions/vera/1"
READS = ("", "/logs", "/events", "/command", "/checkpoints", "/checkpoints/best")


@pytest.fixture
def people(client, app):
    """vera has a session with a checkpoint; mal and otto are ordinary users too."""
    users = {name: factories.user(name) for name in ("vera", "mal", "otto")}
    users["admin"] = factories.user("root", admin=True)
    headers = {name: factories.headers(factories.token(user)) for name, user in users.items()}
    factories.session(users["vera"])
    saved = client.put(
        f"{VERA_1}/checkpoints/best", data=code_archive({"model.bin": "w"}), headers=headers["vera"]
    )
    assert saved.status_code == 201
    assert create_competition(client, headers["admin"]).status_code == 201
    return headers


def invite(client, headers, team, username):
    return client.post(
        f"/api/v1/teams/{team}/members", json={"username": username}, headers=headers
    )


def answer(client, headers, team, verb):
    return client.post(f"/api/v1/teams/{team}/{verb}", headers=headers)


def my_teams(client, headers):
    return {
        t["name"]: t["members"] for t in client.get("/api/v1/teams", headers=headers).get_json()
    }


def submit_veras_model(client, headers):
    return client.post(
        "/api/v1/competitions/toy/submissions/session",
        json={"session": "vera/1:best"},
        headers=headers,
    )


def assert_locked_out_of_veras_work(client, headers):
    attempts = [client.get(VERA_1 + path, headers=headers) for path in READS]
    attempts.append(client.post(f"{VERA_1}/fork", json={"checkpoint": "best"}, headers=headers))
    attempts.append(submit_veras_model(client, headers))
    for response in attempts:
        assert response.status_code == 404, response.request.path
        assert response.get_json()["error"]["message"] == "no session vera/1"


@pytest.fixture
def crew(client, people):
    """Team crew of mal and vera, who accepted mal's invitation."""
    created = client.post("/api/v1/teams", json={"name": "crew"}, headers=people["mal"])
    assert created.status_code == 201
    assert invite(client, people["mal"], "crew", "vera").status_code == 202
    assert answer(client, people["vera"], "crew", "accept").status_code == 200
    return people


def test_adding_someone_only_invites_them_and_opens_none_of_their_work(client, people):
    created = client.post("/api/v1/teams", json={"name": "crew"}, headers=people["mal"])
    assert created.status_code == 201
    sent = invite(client, people["mal"], "crew", "vera")
    assert sent.status_code == 202
    body = sent.get_json()
    assert (body["team"], body["user"], body["invited_by"]) == ("crew", "vera", "mal")
    assert body["members"] == ["mal"] and "if they accept" in body["message"]
    assert my_teams(client, people["mal"]) == {"crew": ["mal"]}
    assert my_teams(client, people["vera"]) == {}
    assert_locked_out_of_veras_work(client, people["mal"])
    # The inviter cannot answer for the invited user.
    forged = answer(client, people["mal"], "crew", "accept")
    assert forged.status_code == 404
    assert forged.get_json()["error"]["message"] == "no invitation to team 'crew'"
    assert my_teams(client, people["mal"]) == {"crew": ["mal"]}


def test_declining_shares_nothing_and_accepting_shares_both_ways(client, people):
    client.post("/api/v1/teams", json={"name": "crew"}, headers=people["mal"])
    invite(client, people["mal"], "crew", "vera")
    waiting = client.get("/api/v1/teams/invitations", headers=people["vera"]).get_json()
    assert [(i["team"], i["invited_by"], i["members"]) for i in waiting] == [
        ("crew", "mal", ["mal"])
    ]
    assert client.get("/api/v1/teams/invitations", headers=people["mal"]).get_json() == []

    assert answer(client, people["vera"], "crew", "decline").status_code == 204
    assert client.get("/api/v1/teams/invitations", headers=people["vera"]).get_json() == []
    assert answer(client, people["vera"], "crew", "accept").status_code == 404
    assert my_teams(client, people["mal"]) == {"crew": ["mal"]}
    assert_locked_out_of_veras_work(client, people["mal"])

    assert invite(client, people["mal"], "crew", "vera").status_code == 202
    joined = answer(client, people["vera"], "crew", "accept")
    assert joined.status_code == 200
    assert joined.get_json() == {"name": "crew", "members": ["mal", "vera"]}
    assert client.get("/api/v1/teams/invitations", headers=people["vera"]).get_json() == []
    for path in READS:
        assert client.get(VERA_1 + path, headers=people["mal"]).status_code == 200, path
    forked = client.post(f"{VERA_1}/fork", json={"checkpoint": "best"}, headers=people["mal"])
    assert forked.status_code == 201 and forked.get_json()["forked_from"] == "vera/1"
    submitted = submit_veras_model(client, people["mal"])
    assert submitted.status_code == 201, submitted.get_json()
    assert client.get("/api/v1/sessions/mal/1", headers=people["vera"]).status_code == 200
    assert client.get(VERA_1, headers=people["otto"]).status_code == 404


def test_leaving_locks_teammates_out_at_their_next_request(client, crew):
    assert client.get(VERA_1, headers=crew["mal"]).status_code == 200
    left = client.delete("/api/v1/teams/crew/members/vera", headers=crew["vera"])
    assert left.status_code == 204
    assert_locked_out_of_veras_work(client, crew["mal"])
    assert my_teams(client, crew["mal"]) == {"crew": ["mal"]}
    assert my_teams(client, crew["vera"]) == {}


def test_members_do_not_remove_each_other_but_administrators_may(client, crew):
    refused = client.delete("/api/v1/teams/crew/members/vera", headers=crew["mal"])
    assert refused.status_code == 403
    assert refused.get_json()["error"]["message"] == (
        "only vera may take themself out of crew: members do not remove each other "
        "(administrators may)"
    )
    assert my_teams(client, crew["vera"]) == {"crew": ["mal", "vera"]}
    outsider = client.delete("/api/v1/teams/crew/members/vera", headers=crew["otto"])
    assert outsider.status_code == 404
    removed = client.delete("/api/v1/teams/crew/members/vera", headers=crew["admin"])
    assert removed.status_code == 204
    assert my_teams(client, crew["vera"]) == {}
    assert client.get(VERA_1, headers=crew["mal"]).status_code == 404


@pytest.mark.parametrize(
    ("inviter", "username", "status", "message"),
    [
        ("mal", "vera", 409, "vera is in crew already"),
        ("mal", "otto", 409, "otto is invited to crew already"),
        ("mal", "nobody", 404, "no user 'nobody'"),
        ("otto", "otto", 404, "no team 'crew' of yours"),
    ],
)
def test_invitations_that_cannot_be_sent(client, crew, inviter, username, status, message):
    assert invite(client, crew["vera"], "crew", "otto").status_code == 202
    refused = invite(client, crew[inviter], "crew", username)
    assert refused.status_code == status
    assert refused.get_json()["error"]["message"] == message


def test_a_member_withdraws_an_invitation_before_it_is_accepted(client, crew):
    invite(client, crew["vera"], "crew", "otto")
    withdrawn = client.delete("/api/v1/teams/crew/invitations/otto", headers=crew["mal"])
    assert withdrawn.status_code == 204
    assert client.get("/api/v1/teams/invitations", headers=crew["otto"]).get_json() == []
    assert answer(client, crew["otto"], "crew", "accept").status_code == 404
    assert my_teams(client, crew["mal"]) == {"crew": ["mal", "vera"]}
