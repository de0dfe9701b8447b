"""The authorization matrix: every operation of the API's OpenAPI document, called by
every kind of caller with exactly that caller's means, against one small world.

Each operation states who may use it; everyone else must be refused (401 without a
user's token, 404 where the object's existence is private to them, 403 where it is
not) and must change nothing in the database. A new route without a rule here fails
the test, so that every route's rule is written down once.

The callers: no token; a stranger; a teammate of the owner (one collaboration team and
one competition team); the owner; the competition's organiser; an administrator; the
SDK token of another session of the owner (what a hostile session holds); the token of
a node that runs none of the owner's sessions (a hostile node host); and the node that
runs them."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from portal import keys, node_work
from portal.extensions import db
from portal.models import Level, Session, SessionKind, Team, User
from portal.services import auth, teams
from scheduler.loop import Scheduler
from tests import factories
from tests.api.test_api import code_archive

ANON, OTHER, TEAMMATE, OWNER, ORGANISER, ADMIN = (
    "anonymous",
    "other",
    "teammate",
    "owner",
    "organiser",
    "admin",
)
SDK, NODE, RUNNER = "sdk-of-another-session", "node", "runner"
USERS = frozenset({OTHER, TEAMMATE, OWNER, ORGANISER, ADMIN})
EVERYONE = USERS | {ANON}
ROLES = (ANON, OTHER, TEAMMATE, OWNER, ORGANISER, ADMIN, SDK, NODE, RUNNER)
NODES = frozenset({NODE, RUNNER})


@dataclass
class Rule:
    """Who may call an operation, and how the others are refused."""

    allow: frozenset[str]
    # Refused users get 404 (the object is private to them) or 403 (they see it).
    hidden: frozenset[str] = frozenset()
    # A session's token is accepted on this route, but only for its own session.
    session_scope: bool = False
    path: dict[str, str] = field(default_factory=dict)
    json: object = None
    data: bytes | None = None
    content_type: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    # The world the caller meets: set up just before the call (and undone after).
    prepare: str | None = None
    # How callers are refused where it is not by who they are: e.g. a code archive
    # that is not theirs to run is one they must upload first (400).
    refused: dict[str, int] = field(default_factory=dict)
    # What an allowed caller may get besides a success (the health check's 503).
    answers: frozenset[int] = frozenset()


def rule(allow, hidden=(), **kwargs) -> Rule:
    return Rule(frozenset(allow), frozenset(hidden), **kwargs)


def expected_refusal(role: str, rule_: Rule) -> set[int]:
    """The status a caller that the rule does not allow must get."""
    if role in rule_.refused:
        return {rule_.refused[role]}
    if role == ANON:
        return {404} if ANON in rule_.hidden else {401}
    if role in NODES:
        return {401}  # a node's token is no user's token
    if role == SDK:
        # Refused outright on user routes; on session routes, its own session only.
        return {404} if rule_.session_scope else {403}
    return {404} if role in rule_.hidden else {403}


def expected_refusal_node_route(role: str, rule_: Rule) -> set[int]:
    """On the agents' routes, a user's token is no node's token; another node meets
    nothing of the runner's."""
    if role in rule_.refused:
        return {rule_.refused[role]}
    return {404} if role == NODE else {401}


SEARCH_SPEC = {"metric": "loss", "search": {"lr": {"uniform": [0, 1]}}, "budget": {"sessions": 2}}

# -- the world ----------------------------------------------------------------------


@pytest.fixture
def world(app, client, redis, tmp_path):
    users = {
        OWNER: factories.user("oona", level=Level.TRUSTED),
        TEAMMATE: factories.user("tess", level=Level.USER),
        OTHER: factories.user("otto", level=Level.USER),
        ORGANISER: factories.user("orla", level=Level.ORGANISER),
        ADMIN: factories.user("root", admin=True),
    }
    headers = {role: factories.headers(factories.token(u)) for role, u in users.items()}
    headers[ANON] = {}
    lab = teams.create(users[OWNER], "lab")
    teams.invite(users[OWNER], lab, "tess")
    teams.accept(users[TEAMMATE], "lab")

    def call(method, path, role=OWNER, **kwargs):
        response = client.open(path, method=method, headers=headers[role], **kwargs)
        assert response.status_code < 300, (method, path, response.get_json())
        return response.get_json()

    dataset = code_archive({"train.csv": "1,2\n"})
    call(
        "POST",
        "/api/v1/datasets/data/versions",
        data=dataset,
        query_string={"visibility": "team", "team": "lab"},
        content_type="application/gzip",
    )
    code = code_archive({"train.py": "print('hello')\n"})
    digest = call("PUT", "/api/v1/code", data=code)["digest"]
    _, runner = factories.node("n1", cpus=64, memory_mb=65536, runtime="docker")
    _, stranger = factories.node("n2", cpus=1, memory_mb=512, runtime="docker")
    headers[RUNNER], headers[NODE] = factories.headers(runner), factories.headers(stranger)
    for _ in range(2):
        call(
            "POST",
            "/api/v1/sessions",
            json={"entry": "train.py", "code_digest": digest, "datasets": ["data"]},
        )
    Scheduler(app, redis).run_pass()
    owned = {
        s.number: s.id
        for s in db.session.scalars(select(Session).where(Session.kind == SessionKind.TRAINING))
    }
    spec = {}
    for number, session_id in owned.items():
        spec[number] = call("GET", f"/api/v1/internal/sessions/{session_id}/spec", RUNNER)
        call(
            "POST",
            f"/api/v1/internal/sessions/{session_id}/state",
            RUNNER,
            json={"status": "running"},
        )
    headers[SDK] = factories.headers(spec[2]["token"])
    call(
        "POST",
        "/api/v1/searches",
        json={"entry": "train.py", "code_digest": digest, "spec": SEARCH_SPEC},
    )
    call(
        "PUT",
        "/api/v1/sessions/oona/1/checkpoints/best",
        data=code_archive({"model.txt": "weights"}),
        content_type="application/gzip",
    )
    loss = [{"tag": "loss", "step": 1, "value": 0.5, "wall_time": 1.0}]
    call("POST", "/api/v1/sessions/oona/1/events", json={"events": loss})
    # oona/3 predicts a file (and has predicted it); oona/4 serves oona/1 as oona-1.
    infer = call(
        "POST",
        "/api/v1/sessions/oona/1/infer",
        data=b"id,x\na,1\n",
        content_type="application/octet-stream",
    )
    assert infer["id"] == "oona/3"
    infer_session = db.session.scalar(select(Session).where(Session.number == 3))
    infer_token = auth.issue_token(
        users[OWNER], ttl=timedelta(hours=1), session_id=infer_session.id
    )
    stored = client.put(
        "/api/v1/sessions/oona/3/predictions",
        data=b"id,prediction\na,1\n",
        headers=factories.headers(infer_token),
    )
    assert stored.status_code == 201, stored.get_json()
    served = call("POST", "/api/v1/serve", json={"session": "oona/1"})
    assert served["name"] == "oona-1" and served["sessions"][0]["id"] == "oona/4"
    files = factories.competition_files()
    toy = {**factories.competition_spec(publish_inputs=True), "team_size_limit": 3}
    form = {"spec": json.dumps(toy)}
    form.update({name: (io.BytesIO(body), name) for name, body in files.items()})
    call("POST", "/api/v1/competitions", ORGANISER, data=form, content_type="multipart/form-data")
    call("POST", "/api/v1/competitions/toy/teams", json={"name": "owls"})
    call("POST", "/api/v1/competitions/toy/team/invites", json={"username": "tess"})
    call("POST", "/api/v1/competitions/toy/team/join", TEAMMATE, json={"team": "owls"})
    predictions = factories.predictions(files, 30)
    call(
        "POST",
        "/api/v1/competitions/toy/submissions",
        data=predictions,
        content_type="text/csv",
    )
    model = call("POST", "/api/v1/competitions/toy/submissions/session", json={"session": "oona/1"})
    reproduction = call(
        "POST", f"/api/v1/competitions/toy/submissions/{model['id']}/reproductions", ORGANISER
    )
    Scheduler(app, redis).run_pass()
    grading = db.session.scalar(select(Session).where(Session.kind == SessionKind.GRADING))
    assert grading is not None and grading.node is not None and grading.node.name == "n1"
    job_id = node_work.push(redis, "n1", node_work.EXEC, session_id=owned[1], command=["id"])
    values = {
        "username": "oona",
        "number": "1",
        "session_id": str(owned[1]),
        "grading_id": str(grading.id),
        "code_digest": digest,
        "dataset_digest": hashlib.sha256(dataset).hexdigest(),
        "submission_id": "1",
        "model_submission_id": str(model["id"]),
        "reproduction_id": str(reproduction["id"]),
        "job_id": job_id,
        "slug": "toy",
    }
    return {"headers": headers, "values": values, "files": files, "code": code}


# -- the rules ------------------------------------------------------------------------

SESSION_READ = rule({OWNER, TEAMMATE, ADMIN}, hidden={OTHER, ORGANISER}, session_scope=True)
SESSION_READ_USERS = rule({OWNER, TEAMMATE, ADMIN}, hidden={OTHER, ORGANISER})
SESSION_CHANGE = rule({OWNER, ADMIN}, hidden={OTHER, ORGANISER})
SESSION_CHANGE_SCOPED = rule({OWNER, ADMIN}, hidden={OTHER, ORGANISER}, session_scope=True)
ADMIN_ONLY = rule({ADMIN})
SIGNED_IN = rule(USERS)
ORGANISERS = rule({ORGANISER, ADMIN})
NODE_OWN = {RUNNER}

RULES: dict[str, Rule] = {
    # 503 here: no node has sent a heartbeat in this world.
    "GET /api/v1/health": rule(EVERYONE | {SDK} | NODES, answers=frozenset({503})),
    "POST /api/v1/auth/tokens": rule(
        EVERYONE | {SDK} | NODES, json={"username": "otto", "password": "otto-password"}
    ),
    "POST /api/v1/auth/users": rule(
        EVERYONE | {SDK} | NODES, json={"username": "newcomer", "password": "long-enough-pw"}
    ),
    "DELETE /api/v1/auth/tokens/current": SIGNED_IN,
    "GET /api/v1/auth/me": SIGNED_IN,
    "PUT /api/v1/code": rule(USERS, data=b"", content_type="application/gzip", prepare="code"),
    # Code is run only by whoever uploaded it: others must upload it first.
    "POST /api/v1/sessions": rule(
        {OWNER},
        refused={OTHER: 400, TEAMMATE: 400, ORGANISER: 400, ADMIN: 400},
        json={"entry": "train.py", "code_digest": "{code_digest}"},
        prepare="code_known",
    ),
    "GET /api/v1/sessions": SIGNED_IN,
    # A search runs code as sessions do: only whoever uploaded it may start one.
    "POST /api/v1/searches": rule(
        {OWNER},
        refused={OTHER: 400, TEAMMATE: 400, ORGANISER: 400, ADMIN: 400},
        prepare="search",
    ),
    "GET /api/v1/searches": SIGNED_IN,
    # Serving a session is like forking it: its owner, teammates and administrators.
    "POST /api/v1/serve": rule(
        {OWNER, TEAMMATE, ADMIN}, hidden={OTHER, ORGANISER}, json={"session": "oona/1"}
    ),
    "GET /api/v1/serve": SIGNED_IN,
    "GET /api/v1/serve/{name}": rule(
        {OWNER, TEAMMATE, ADMIN}, hidden={OTHER, ORGANISER}, path={"name": "oona-1"}
    ),
    "POST /api/v1/serve/{name}/stop": rule(
        {OWNER, ADMIN}, hidden={OTHER, ORGANISER}, path={"name": "oona-1"}
    ),
    # No replica is ready here: the allowed get the 503 that says so.
    "POST /api/v1/serve/{name}/predict": rule(
        {OWNER, TEAMMATE, ADMIN},
        hidden={OTHER, ORGANISER},
        path={"name": "oona-1"},
        json={"rows": [["a", 1]]},
        answers=frozenset({503}),
    ),
    "POST /api/v1/sessions/{username}/{number}/infer": rule(
        {OWNER, TEAMMATE, ADMIN},
        hidden={OTHER, ORGANISER},
        data=b"id,x\nb,2\n",
        content_type="application/octet-stream",
    ),
    "GET /api/v1/sessions/{username}/{number}/input": rule(
        {OWNER, TEAMMATE, ADMIN},
        hidden={OTHER, ORGANISER},
        session_scope=True,
        path={"number": "3"},
    ),
    "GET /api/v1/sessions/{username}/{number}/predictions": rule(
        {OWNER, TEAMMATE, ADMIN}, hidden={OTHER, ORGANISER}, path={"number": "3"}
    ),
    # Only the session's own program: none of the callers here holds oona/3's or
    # oona/4's token.
    "PUT /api/v1/sessions/{username}/{number}/predictions": rule(
        set(),
        hidden={OTHER, ORGANISER},
        session_scope=True,
        path={"number": "3"},
        data=b"id,prediction\na,9\n",
        content_type="application/octet-stream",
    ),
    "GET /api/v1/sessions/{username}/{number}/serve/next": rule(
        set(), hidden={OTHER, ORGANISER}, session_scope=True, path={"number": "4"}
    ),
    "POST /api/v1/sessions/{username}/{number}/serve/replies": rule(
        set(),
        hidden={OTHER, ORGANISER},
        session_scope=True,
        path={"number": "4"},
        json={"replies": []},
    ),
    "GET /api/v1/searches/{username}/{number}": SESSION_READ_USERS,
    "POST /api/v1/searches/{username}/{number}/stop": SESSION_CHANGE,
    "GET /api/v1/sessions/{username}/{number}": SESSION_READ,
    "DELETE /api/v1/sessions/{username}/{number}": SESSION_CHANGE,
    "PATCH /api/v1/sessions/{username}/{number}": rule(
        {OWNER, ADMIN}, hidden={OTHER, ORGANISER}, json={"memo": "mine"}
    ),
    "POST /api/v1/sessions/{username}/{number}/resume": rule(
        {OWNER, ADMIN}, hidden={OTHER, ORGANISER}, json={}
    ),
    "GET /api/v1/sessions/{username}/{number}/code": SESSION_READ_USERS,
    "POST /api/v1/sessions/{username}/{number}/stop": SESSION_CHANGE,
    "POST /api/v1/sessions/{username}/{number}/exec": rule(
        {OWNER, ADMIN},
        hidden={OTHER, ORGANISER},
        json={"command": ["id"]},
        answers=frozenset({504}),  # queued for the node, which does not answer here
    ),
    "POST /api/v1/sessions/{username}/{number}/fork": rule(
        {OWNER, TEAMMATE, ADMIN}, hidden={OTHER, ORGANISER}, json={}
    ),
    "GET /api/v1/sessions/{username}/{number}/command": SESSION_READ_USERS,
    "GET /api/v1/sessions/{username}/{number}/logs": SESSION_READ_USERS,
    "GET /api/v1/sessions/{username}/{number}/events": SESSION_READ,
    "POST /api/v1/sessions/{username}/{number}/events": rule(
        {OWNER, ADMIN},
        hidden={OTHER, ORGANISER},
        session_scope=True,
        json={"events": [{"tag": "loss", "step": 1, "value": 0.5, "wall_time": 1.0}]},
    ),
    "GET /api/v1/sessions/{username}/{number}/series": SESSION_READ,
    "GET /api/v1/sessions/{username}/{number}/scalars": rule(
        {OWNER, TEAMMATE, ADMIN},
        hidden={OTHER, ORGANISER},
        session_scope=True,
        query={"tag": "loss"},
    ),
    "GET /api/v1/sessions/{username}/{number}/resources": SESSION_READ_USERS,
    "POST /api/v1/sessions/{username}/{number}/bound": rule(
        {OWNER, ADMIN},
        hidden={OTHER, ORGANISER},
        session_scope=True,
        json={"save": True},
    ),
    "GET /api/v1/sessions/{username}/{number}/checkpoints": SESSION_READ,
    "PUT /api/v1/sessions/{username}/{number}/checkpoints/{name}": rule(
        {OWNER, ADMIN},
        hidden={OTHER, ORGANISER},
        session_scope=True,
        path={"name": "later"},
        content_type="application/gzip",
        prepare="checkpoint",
    ),
    "GET /api/v1/sessions/{username}/{number}/checkpoints/{name}": rule(
        {OWNER, TEAMMATE, ADMIN},
        hidden={OTHER, ORGANISER},
        session_scope=True,
        path={"name": "best"},
    ),
    "GET /api/v1/compare": rule(
        {OWNER, TEAMMATE, ADMIN}, hidden={OTHER, ORGANISER}, query={"s": "oona/1"}
    ),
    "GET /api/v1/datasets": rule(EVERYONE),
    "GET /api/v1/datasets/{name}": rule(
        {OWNER, TEAMMATE, ADMIN}, hidden={ANON, OTHER, ORGANISER}, path={"name": "data"}
    ),
    "DELETE /api/v1/datasets/{name}": rule(
        {OWNER, ADMIN}, hidden={OTHER, ORGANISER}, path={"name": "data"}
    ),
    # Dataset names are one namespace, like user names: a stranger learns that a name
    # is taken, and nothing else.
    "POST /api/v1/datasets/{name}/versions": rule(
        {OWNER, ADMIN},
        refused={OTHER: 409, ORGANISER: 409},
        path={"name": "data"},
        data=b"",
        content_type="application/gzip",
        prepare="dataset",
    ),
    "GET /api/v1/datasets/{name}/versions/{number}/archive": rule(
        {OWNER, TEAMMATE, ADMIN}, hidden={ANON, OTHER, ORGANISER}, path={"name": "data"}
    ),
    "DELETE /api/v1/datasets/{name}/versions/{number}": rule(
        {OWNER, ADMIN}, hidden={OTHER, ORGANISER}, path={"name": "data"}
    ),
    "GET /api/v1/datasets/{name}/versions/{number}": rule(
        {OWNER, TEAMMATE, ADMIN}, hidden={ANON, OTHER, ORGANISER}, path={"name": "data"}
    ),
    "GET /api/v1/teams": SIGNED_IN,
    "POST /api/v1/teams": rule(USERS, json={"name": "newteam"}),
    "POST /api/v1/teams/{name}/members": rule(
        {OWNER, TEAMMATE, ADMIN},
        hidden={OTHER, ORGANISER},
        path={"name": "lab"},
        json={"username": "otto"},
    ),
    "DELETE /api/v1/teams/{name}/invitations/{username}": rule(
        {OWNER, TEAMMATE, ADMIN},
        hidden={OTHER, ORGANISER},
        path={"name": "lab", "username": "otto"},
        prepare="lab_invites_otto",
    ),
    "GET /api/v1/teams/invitations": SIGNED_IN,
    "POST /api/v1/teams/{name}/accept": rule(
        {OTHER},
        hidden={TEAMMATE, OWNER, ORGANISER, ADMIN},
        path={"name": "lab"},
        prepare="lab_invites_otto",
    ),
    "POST /api/v1/teams/{name}/decline": rule(
        {OTHER},
        hidden={TEAMMATE, OWNER, ORGANISER, ADMIN},
        path={"name": "lab"},
        prepare="lab_invites_otto",
    ),
    # Members take themselves out; they do not remove each other.
    "DELETE /api/v1/teams/{name}/members/{username}": rule(
        {TEAMMATE, ADMIN},
        hidden={OTHER, ORGANISER},
        path={"name": "lab", "username": "tess"},
    ),
    "GET /api/v1/competitions": rule(EVERYONE),
    "POST /api/v1/competitions": rule(
        {OWNER, ORGANISER, ADMIN}, data=b"", content_type="multipart/form-data", prepare="spec"
    ),
    "POST /api/v1/competitions/import": rule(
        {OWNER, ORGANISER, ADMIN}, content_type="multipart/form-data", prepare="bundle"
    ),
    "GET /api/v1/competitions/{slug}": rule(EVERYONE),
    "PATCH /api/v1/competitions/{slug}": rule({ORGANISER, ADMIN}, json={"title": "Toy"}),
    "PATCH /api/v1/competitions/{slug}/rounds/{number}": rule(
        {ORGANISER, ADMIN}, json={"name": "First"}
    ),
    "PUT /api/v1/competitions/{slug}/rounds/{number}/labels": rule(
        {ORGANISER, ADMIN}, content_type="text/csv", prepare="labels"
    ),
    "POST /api/v1/competitions/{slug}/rounds/{number}/rescore": ORGANISERS,
    "GET /api/v1/competitions/{slug}/team": SIGNED_IN,
    "POST /api/v1/competitions/{slug}/teams": rule(USERS, json={"name": "newcomers"}),
    "POST /api/v1/competitions/{slug}/team/invites": rule(
        {OWNER, TEAMMATE}, hidden={OTHER, ORGANISER, ADMIN}, json={"username": "otto"}
    ),
    # Only the invited joins; members of the team are told they are in it (409).
    "POST /api/v1/competitions/{slug}/team/join": rule(
        {OTHER},
        json={"team": "owls"},
        prepare="owls_invite_otto",
        refused={OWNER: 409, TEAMMATE: 409},
    ),
    "POST /api/v1/competitions/{slug}/team/leave": rule(
        {OWNER, TEAMMATE}, hidden={OTHER, ORGANISER, ADMIN}
    ),
    "POST /api/v1/competitions/{slug}/teams/{name}/disqualify": rule(
        {ORGANISER, ADMIN}, path={"name": "owls"}, json={"reason": "shared accounts"}
    ),
    "POST /api/v1/competitions/{slug}/submissions": rule(
        USERS, content_type="text/csv", prepare="predictions"
    ),
    "GET /api/v1/competitions/{slug}/submissions": rule(
        {OWNER, TEAMMATE}, hidden={OTHER, ORGANISER, ADMIN}
    ),
    "POST /api/v1/competitions/{slug}/submissions/session": rule(
        {OWNER, TEAMMATE, ADMIN}, hidden={OTHER, ORGANISER}, json={"session": "oona/1"}
    ),
    "GET /api/v1/competitions/{slug}/submissions/{submission_id}": rule(
        {OWNER, TEAMMATE, ORGANISER, ADMIN}, hidden={OTHER}
    ),
    "POST /api/v1/competitions/{slug}/submissions/{submission_id}/select": rule(
        {OWNER, TEAMMATE}, hidden={OTHER, ORGANISER, ADMIN}, json={"selected": True}
    ),
    "POST /api/v1/competitions/{slug}/submissions/{submission_id}/disqualify": rule(
        {ORGANISER, ADMIN}, json={"reason": "copied"}
    ),
    "POST /api/v1/competitions/{slug}/submissions/{submission_id}/reproductions": rule(
        {ORGANISER, ADMIN}, path={"submission_id": "{model_submission_id}"}
    ),
    "GET /api/v1/competitions/{slug}/reproductions": ORGANISERS,
    "GET /api/v1/competitions/{slug}/reproductions/{reproduction_id}": ORGANISERS,
    "POST /api/v1/competitions/{slug}/reproductions/{reproduction_id}/stop": ORGANISERS,
    "GET /api/v1/competitions/{slug}/rounds/{number}/leaderboard": rule(EVERYONE),
    "GET /api/v1/competitions/{slug}/leaderboard": rule(EVERYONE),
    "GET /api/v1/competitions/{slug}/rounds/{number}/inputs.csv": rule(EVERYONE),
    "GET /api/v1/competitions/{slug}/rounds/{number}/ranking.csv": ORGANISERS,
    "GET /api/v1/nodes": ADMIN_ONLY,
    "POST /api/v1/nodes/{name}/drain": rule({ADMIN}, path={"name": "n1"}, json={}),
    "GET /api/v1/nodes/queue": ADMIN_ONLY,
    "DELETE /api/v1/nodes/{name}": rule({ADMIN}, path={"name": "n2"}),
    "POST /api/v1/nodes/join-token": ADMIN_ONLY,
    "GET /api/v1/environments": SIGNED_IN,
    "GET /api/v1/cluster": SIGNED_IN,
    "GET /api/v1/cluster/gpus": SIGNED_IN,
    "GET /api/v1/notifications": SIGNED_IN,
    "POST /api/v1/notifications/read": rule(USERS, json={}),
    "PUT /api/v1/notifications/email": rule(USERS, json={"enabled": False}),
    "GET /api/v1/users/{username}/credit": rule(
        {OWNER, ADMIN}, hidden={OTHER, TEAMMATE, ORGANISER}
    ),
    "GET /api/v1/users/{username}/credit/ledger": rule(
        {OWNER, ADMIN}, hidden={OTHER, TEAMMATE, ORGANISER}
    ),
    "POST /api/v1/users/{username}/credit/grants": rule({ADMIN}, json={"amount": 5}),
    "POST /api/v1/users/{username}/credit/refunds": rule({ADMIN}, json={"amount": 5}),
    "GET /api/v1/users": ADMIN_ONLY,
    "PATCH /api/v1/users/{username}": rule({ADMIN}, json={"level": "admin"}),
    "POST /api/v1/users/invitations": rule({ADMIN}, json={}),
}

# The agents' routes: node tokens only, and only for the node's own work.
NODE_RULES: dict[str, Rule] = {
    # With the join token; a bearer token sent beside it must be the node's own.
    "POST /api/v1/internal/nodes/register": rule(
        {ANON},
        refused={NODE: 403, RUNNER: 403},
        json={"name": "n3", "cpu_count": 1, "memory_mb": 512, "join_token": "test-join-token"},
    ),
    "POST /api/v1/internal/nodes/work": rule(NODES, json={"wait": 0}),
    "POST /api/v1/internal/nodes/work/{job_id}/result": rule(
        NODE_OWN, json={"result": {"exit_code": 0, "output": "uid=1"}}
    ),
    "POST /api/v1/internal/nodes/heartbeat": rule(NODES, json={}),
    "GET /api/v1/internal/sessions/{session_id}/spec": rule(NODE_OWN),
    "GET /api/v1/internal/sessions/{session_id}/inputs": rule(
        NODE_OWN, path={"session_id": "{grading_id}"}
    ),
    "PUT /api/v1/internal/sessions/{session_id}/predictions": rule(
        NODE_OWN,
        path={"session_id": "{grading_id}"},
        content_type="text/csv",
        prepare="predictions",
    ),
    "GET /api/v1/internal/datasets/{digest}": rule(NODE_OWN, path={"digest": "{dataset_digest}"}),
    "GET /api/v1/internal/code/{digest}": rule(NODE_OWN, path={"digest": "{code_digest}"}),
    "POST /api/v1/internal/sessions/{session_id}/state": rule(NODE_OWN, json={"status": "running"}),
    "POST /api/v1/internal/sessions/{session_id}/scalars": rule(
        NODE_OWN, json={"scalars": {"loss": {"step": [1], "value": [0.5], "wall_time": [1.0]}}}
    ),
    "POST /api/v1/internal/sessions/{session_id}/resources": rule(
        NODE_OWN, json={"samples": [{"t": 1, "memory_mb": 1.0}]}
    ),
    "POST /api/v1/internal/sessions/{session_id}/logs": rule(
        NODE_OWN, json={"lines": [{"seq": 0, "text": "hello"}]}
    ),
}


# -- the matrix -----------------------------------------------------------------------


class Snapshot:
    """The world's database file and artifact store, put back after any call that may
    have changed them, so that every caller meets the same world."""

    def __init__(self, app, tmp_path: Path):
        self.database = Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
        self.store = Path(app.config["ARTIFACT_ROOT"])
        self.copy = tmp_path / "snapshot"
        self._release()
        self.copy.mkdir()
        shutil.copy2(self.database, self.copy / "podium.db")
        shutil.copytree(self.store, self.copy / "artifacts")

    @staticmethod
    def _release() -> None:
        db.session.remove()
        db.engine.dispose()  # SQLite folds its write-ahead log into the file on close

    def restore(self) -> None:
        self._release()
        for suffix in ("-wal", "-shm"):
            self.database.with_name(self.database.name + suffix).unlink(missing_ok=True)
        shutil.copy2(self.copy / "podium.db", self.database)
        shutil.rmtree(self.store)
        shutil.copytree(self.copy / "artifacts", self.store)


def fingerprint() -> str:
    """Every row of every table, but the times a token was last used (written by any
    authenticated call, refused or not)."""
    digest = hashlib.sha256()
    for table in db.metadata.sorted_tables:
        columns = [c for c in table.columns if c.name != "last_used_at"]
        for row in db.session.execute(select(*columns).order_by(*table.primary_key.columns)):
            digest.update(repr(tuple(row)).encode())
    db.session.rollback()
    return digest.hexdigest()


def prepared(rule_: Rule, world, client) -> dict:
    """The call's body, made fresh for each call (a multipart body is read once)."""
    from tests.competitions.test_bundles import codabench, zipped

    kind = rule_.prepare
    files = world["files"]
    owner = db.session.scalar(select(User).where(User.username == "oona"))
    if kind == "lab_invites_otto":
        teams.invite(owner, db.session.scalar(select(Team).where(Team.name == "lab")), "otto")
    elif kind == "owls_invite_otto":
        invited = client.post(
            "/api/v1/competitions/toy/team/invites",
            json={"username": "otto"},
            headers=world["headers"][OWNER],
        )
        assert invited.status_code < 300, invited.get_json()
    body: dict = {}
    if rule_.json is not None:
        body["json"] = rule_.json
    if rule_.data is not None:
        body["data"] = rule_.data
    if rule_.content_type:
        body["content_type"] = rule_.content_type
    if kind == "code":
        body["data"] = code_archive({"train.py": "print('again')\n"})
    elif kind == "code_known":
        body["json"] = {"entry": "train.py", "code_digest": world["values"]["code_digest"]}
    elif kind == "search":
        body["json"] = {
            "entry": "train.py",
            "code_digest": world["values"]["code_digest"],
            "spec": SEARCH_SPEC,
        }
    elif kind == "checkpoint":
        body["data"] = code_archive({"model.txt": "more weights"})
    elif kind == "dataset":
        body["data"] = code_archive({"train.csv": "3,4\n"})
    elif kind == "spec":
        form = {"spec": json.dumps(factories.competition_spec("fresh"))}
        form.update({name: (io.BytesIO(b), name) for name, b in files.items()})
        body["data"] = form
    elif kind == "bundle":
        body["data"] = {"bundle": (io.BytesIO(zipped(codabench())), "bundle.zip")}
    elif kind == "labels":
        body["data"] = files["labels.csv"]
    elif kind == "predictions":
        body["data"] = factories.predictions(files, 20)
    return body


# Who may do what does not depend on the database: one is enough, and its file is
# quick to put back.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_route_refuses_every_caller_it_does_not_allow(
    world, app, client, redis, tmp_path, monkeypatch
):
    # No agent answers here: a command sent to the session's node is not waited for.
    monkeypatch.setattr(node_work, "wait_done", lambda redis, job_id, timeout: None)
    spec = client.get("/api/v1/openapi.json").get_json()
    operations = [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "put", "post", "patch", "delete")
    ]
    documented = {f"{m} {p}" for m, p in operations}
    assert documented == set(RULES) | set(NODE_RULES), (
        "routes without a rule: "
        + ", ".join(sorted(documented - set(RULES) - set(NODE_RULES)))
        + "; rules without a route: "
        + ", ".join(sorted(set(RULES) | set(NODE_RULES) - documented))
    )
    snapshot = Snapshot(app, tmp_path)
    problems: list[str] = []
    for method, template in operations:
        key = f"{method} {template}"
        node_route = key in NODE_RULES
        rule_ = NODE_RULES.get(key) or RULES[key]
        values = {**world["values"], **rule_.path}
        values = {k: v.format(**world["values"]) for k, v in values.items()}
        url = template.format(**values)
        for role in ROLES:
            body = prepared(rule_, world, client)
            before = fingerprint()
            response = client.open(
                url,
                method=method,
                headers=world["headers"][role],
                query_string=rule_.query,
                **body,
            )
            status = response.status_code
            allowed = role in rule_.allow
            if allowed:
                expected = "not 401/403/404"
                ok = status in rule_.answers or (status not in (401, 403, 404) and status < 500)
            else:
                refusal = (
                    expected_refusal_node_route(role, rule_)
                    if node_route
                    else expected_refusal(role, rule_)
                )
                expected = "/".join(map(str, sorted(refusal)))
                ok = status in refusal
                if ok and fingerprint() != before:
                    ok, expected = False, f"{expected} and nothing changed"
            if not ok:
                answer = response.get_json(silent=True)
                text = str(answer)[:100]
                problems.append(f"{key} as {role}: {status} (expected {expected}) {text[:100]}")
            redis.delete(*redis.keys(f"{keys.RATE_LIMITS}*") or ["none"])
            snapshot.restore()
    assert problems == [], f"{len(problems)} problems:\n" + "\n".join(problems)
