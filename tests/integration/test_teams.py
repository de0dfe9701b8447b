"""Collaboration teams through the real command: nobody joins without accepting."""

import pytest

from tests.integration.accounts import create_user
from tests.integration.stack import User


@pytest.fixture
def vera_and_mal(stack, tmp_path) -> tuple[User, User]:
    people = []
    for name in ("vera", "mal"):
        create_user(stack, name, f"{name}-password")
        person = User(stack, tmp_path / name)
        person.login(name, f"{name}-password")
        people.append(person)
    return people[0], people[1]


def test_a_team_is_joined_by_accepting_an_invitation_and_left_at_once(vera_and_mal):
    vera, mal = vera_and_mal
    assert mal("team", "create", "crew").stdout == "team crew: mal\n"
    added = mal("team", "add", "crew", "vera")
    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines() == [
        "`podium team add` sends an invitation (the same as `podium team invite`)",
        "invited vera to crew: they join when they run `podium team accept crew`",
    ]
    assert mal.json("team", "ls") == [{"name": "crew", "members": ["mal"]}]
    assert vera.json("team", "ls") == []
    assert vera("team", "invitations").stdout.splitlines()[1].split() == ["crew", "mal", "mal"]

    assert vera("team", "decline", "crew").stdout == "declined the invitation to crew\n"
    refused = vera("team", "accept", "crew")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == "podium: error: no invitation to team 'crew'\n"
    assert vera.json("team", "invitations") == []

    assert mal("team", "invite", "crew", "vera").returncode == 0
    assert vera("team", "accept", "crew").stdout == "joined crew: mal, vera\n"
    assert mal.json("team", "ls") == [{"name": "crew", "members": ["mal", "vera"]}]
    assert vera("team", "leave", "crew").stdout == "left crew\n"
    assert mal.json("team", "ls") == [{"name": "crew", "members": ["mal"]}]
