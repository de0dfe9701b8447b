"""Each competition use case is one service function: the pages and the API that call
it behave the same. Every test here runs once through the API and once through the
page."""

import html
import io
import json
import re
import sys

import pytest
import yaml

from portal.extensions import db
from portal.models import Competition, Level, Submission
from tests import factories
from tests.competitions.test_competitions_api import create, score_all, submit

SLUG = "toy"
URL = f"/api/v1/competitions/{SLUG}"


def flash_error(page: str) -> str:
    found = re.search(r'class="flash error"[^>]*>([^<]*)<', page)
    return html.unescape(found.group(1)).strip() if found else ""


class Browser:
    """A user's browser: a test client whose every request runs in an app context of
    its own, as a request to the portal does (the test's own app context would carry
    one user's login into another's requests)."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()

    def get(self, *args, **kwargs):
        with self.app.app_context():
            return self.client.get(*args, **kwargs)

    def post(self, *args, **kwargs):
        with self.app.app_context():
            return self.client.post(*args, **kwargs)


def log_in(app, username: str) -> tuple[Browser, str]:
    """A browser of `username`, logged in through the form, and the CSRF token its
    forms carry."""
    browser = Browser(app)
    page = browser.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    answer = browser.post(
        "/login",
        data={"username": username, "password": f"{username}-password", "csrf_token": token},
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)[:3000]
    return browser, token


@pytest.fixture
def contest(app, client, redis):
    organiser = factories.user("olga")
    spec = factories.competition_spec(SLUG, final_selections=1)
    files = factories.competition_files()
    headers = factories.headers(factories.token(organiser))
    assert create(client, headers, spec=spec, files=files).status_code == 201
    ann = factories.headers(factories.token(factories.user("ann")))
    better = submit(client, ann, factories.predictions(files, 40)).get_json()["id"]
    worse = submit(client, ann, factories.predictions(files, 10)).get_json()["id"]
    score_all(app, redis)
    return {"organiser": headers, "ann": ann, "better": better, "worse": worse}


def select(app, client, contest, via: str, submission_id: int, selected: bool = True) -> str:
    """Select as ann, through the API or the competition page; the error, if any."""
    if via == "api":
        answer = client.post(
            f"{URL}/submissions/{submission_id}/select",
            json={"selected": selected},
            headers=contest["ann"],
        )
        return "" if answer.status_code == 200 else answer.get_json()["error"]["message"]
    browser, token = log_in(app, "ann")
    form = {"csrf_token": token, "submission": submission_id, "selected": "1" if selected else ""}
    answer = browser.post(f"/competitions/{SLUG}/select", data=form, follow_redirects=True)
    assert answer.status_code == 200
    return flash_error(answer.get_data(as_text=True))


@pytest.mark.parametrize("via", ["api", "page"])
def test_select_marks_the_cached_private_board_changed(app, client, contest, via):
    private = f"{URL}/leaderboard?board=private"
    before = client.get(private, headers=contest["organiser"]).get_json()
    assert before["rows"][0]["submission"] == contest["better"]  # cached now
    assert select(app, client, contest, via, contest["worse"]) == ""
    after = client.get(private, headers=contest["organiser"]).get_json()
    assert after["rows"][0]["submission"] == contest["worse"]
    assert db.session.get(Submission, contest["worse"]).selected


@pytest.mark.parametrize("via", ["api", "page"])
def test_a_disqualified_submission_cannot_be_selected(app, client, contest, via):
    client.post(
        f"{URL}/submissions/{contest['worse']}/disqualify",
        json={"reason": "copied"},
        headers=contest["organiser"],
    )
    error = select(app, client, contest, via, contest["worse"])
    assert "disqualified (copied)" in error
    db.session.expire_all()
    assert not db.session.get(Submission, contest["worse"]).selected


@pytest.mark.parametrize("via", ["api", "page"])
def test_create_from_a_spec_takes_the_same_spec_and_gives_the_same_errors(app, client, via):
    organiser = factories.user("olga", level=Level.ORGANISER)
    spec = factories.competition_spec("same")
    files = factories.competition_files()
    browser, token = log_in(app, "olga") if via == "page" else (None, "")

    def send(spec_text: str, files: dict[str, bytes]):
        if via == "api":
            data = {"spec": spec_text}
            data.update({name: (io.BytesIO(body), name) for name, body in files.items()})
            answer = client.post(
                "/api/v1/competitions",
                data=data,
                headers=factories.headers(factories.token(organiser)),
                content_type="multipart/form-data",
            )
            return "" if answer.status_code == 201 else answer.get_json()["error"]["message"]
        assert browser is not None
        data = {
            "csrf_token": token,
            "spec": (io.BytesIO(spec_text.encode()), "spec.yaml"),
            "files": [(io.BytesIO(body), name) for name, body in files.items()],
        }
        answer = browser.post("/competitions/new", data=data, content_type="multipart/form-data")
        if answer.status_code == 302:
            return ""
        return flash_error(answer.get_data(as_text=True))

    broken = dict(spec, rounds=[dict(spec["rounds"][0], metric="nonsense")])
    assert "metric" in send(yaml.safe_dump(broken), files)
    missing = send(json.dumps(spec), {"test.csv": files["test.csv"]})
    assert "labels.csv" in missing and "was not uploaded" in missing
    assert db.session.scalar(db.select(db.func.count(Competition.id))) == 0
    assert send(json.dumps(spec), files) == ""
    assert db.session.scalar(db.select(Competition.title)) == "Same"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))


def _submit_file(app, client, via: str, headers, username: str, body: bytes) -> str:
    if via == "api":
        answer = submit(client, headers, body)
        return "" if answer.status_code == 201 else answer.get_json()["error"]["message"]
    browser, token = log_in(app, username)
    data = {"csrf_token": token, "predictions": (io.BytesIO(body), "preds.csv"), "memo": "m"}
    answer = browser.post(
        f"/competitions/{SLUG}/submit/file",
        data=data,
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert answer.status_code == 200
    return flash_error(answer.get_data(as_text=True))


@pytest.mark.parametrize("via", ["api", "page"])
def test_submitting_a_file_counts_and_is_refused_alike(app, client, redis, via):
    organiser = factories.headers(factories.token(factories.user("olga")))
    files = factories.competition_files()
    spec = factories.competition_spec(SLUG, daily_quota=1)
    assert create(client, organiser, spec=spec, files=files).status_code == 201
    ann = factories.headers(factories.token(factories.user("ann")))
    assert "not a CSV" in _submit_file(app, client, via, ann, "ann", b"\x00\x01garbage")
    assert _submit_file(app, client, via, ann, "ann", factories.predictions(files, 30)) == ""
    refused = _submit_file(app, client, via, ann, "ann", factories.predictions(files, 30))
    assert "used its 1 submissions of today" in refused
    assert db.session.scalar(db.select(db.func.count(Submission.id))) == 1
    body = client.get(f"{URL}/submissions", headers=ann).get_json()
    assert [s["status"] for s in body] == ["scoring"]


@pytest.mark.parametrize("via", ["api", "page"])
def test_a_models_only_round_refuses_files(app, client, redis, via):
    organiser = factories.headers(factories.token(factories.user("olga")))
    files = factories.competition_files()
    spec = factories.competition_spec(SLUG, accepts="models")
    assert create(client, organiser, spec=spec, files=files).status_code == 201
    ann = factories.headers(factories.token(factories.user("ann")))
    error = _submit_file(app, client, via, ann, "ann", factories.predictions(files, 30))
    assert "takes models only" in error
    assert db.session.scalar(db.select(db.func.count(Submission.id))) == 0


def test_published_test_inputs_are_the_same_on_the_page_and_the_api(app, client, redis):
    organiser = factories.headers(factories.token(factories.user("olga")))
    files = factories.competition_files()
    spec = factories.competition_spec(SLUG, publish_inputs=True)
    spec["rounds"].append(dict(spec["rounds"][0], publish_inputs=False))
    spec["rounds"][1]["starts_at"] = spec["rounds"][0]["ends_at"]
    spec["rounds"][1]["ends_at"] = "2099-01-01T00:00:00+00:00"
    assert create(client, organiser, spec=spec, files=files).status_code == 201
    api = client.get(f"{URL}/rounds/1/inputs.csv")  # spectators too: no token
    page = Browser(app).get(f"/competitions/{SLUG}/rounds/1/test.csv")
    assert api.status_code == page.status_code == 200
    assert api.data == page.data == files["test.csv"]
    assert b"label" not in api.data.splitlines()[0]
    hidden = client.get(f"{URL}/rounds/2/inputs.csv")
    assert hidden.status_code == 404
    assert "does not publish its test inputs" in hidden.get_json()["error"]["message"]
    assert Browser(app).get(f"/competitions/{SLUG}/rounds/2/test.csv").status_code == 404


@pytest.mark.parametrize("via", ["api", "page"])
def test_teams_are_created_joined_and_left_alike(app, client, redis, via):
    organiser = factories.headers(factories.token(factories.user("olga")))
    assert create(client, organiser).status_code == 201
    ann = factories.headers(factories.token(factories.user("ann")))
    bob = factories.headers(factories.token(factories.user("bob")))
    browsers: dict = {}

    def act(user: str, headers, action: str, **fields) -> str:
        if via == "api":
            path, body = {
                "create": ("/teams", {"name": fields.get("name", "")}),
                "join": ("/team/join", {"code": fields.get("code"), "team": None}),
                "leave": ("/team/leave", None),
            }[action]
            answer = client.post(URL + path, json=body, headers=headers)
            if answer.status_code < 300:
                return ""
            return answer.get_json()["error"]["message"]
        if user not in browsers:
            browsers[user] = log_in(app, user)
        browser, token = browsers[user]
        answer = browser.post(
            f"/competitions/{SLUG}/team/{action}",
            data={"csrf_token": token, **fields},
            follow_redirects=True,
        )
        return flash_error(answer.get_data(as_text=True))

    assert "team name" in act("ann", ann, "create", name="no spaces allowed")
    assert act("ann", ann, "create", name="owls") == ""
    code = client.get(f"{URL}/team", headers=ann).get_json()["team"]["invite_code"]
    assert "no team" in act("bob", bob, "join", code="wrong")
    assert act("bob", bob, "join", code=code) == ""
    members = client.get(f"{URL}/team", headers=ann).get_json()["team"]["members"]
    assert members == ["ann", "bob"]
    assert act("bob", bob, "leave") == ""
    assert client.get(f"{URL}/team", headers=bob).get_json()["team"] is None


def _organiser_page(app, path: str, **fields) -> str:
    """An organiser's form on the panel; the message it flashed (done or error)."""
    browser, token = log_in(app, "olga")
    answer = browser.post(
        f"/competitions/{SLUG}/organise{path}",
        data={"csrf_token": token, **fields},
        follow_redirects=True,
    )
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    found = re.search(r'class="flash (?:error|done)"[^>]*>([^<]*)<', page)
    return html.unescape(found.group(1)).strip() if found else ""


@pytest.mark.parametrize("via", ["api", "page"])
def test_disqualify_a_submission_and_a_team_alike(app, client, contest, via):
    ann = contest["ann"]
    if via == "api":
        client.post(
            f"{URL}/submissions/{contest['better']}/disqualify",
            json={"reason": "leak"},
            headers=contest["organiser"],
        )
        client.post(
            f"{URL}/teams/ann/disqualify", json={"reason": "sharing"}, headers=contest["organiser"]
        )
    else:
        assert "is disqualified" in _organiser_page(
            app, f"/disqualify/submission/{contest['better']}", reason="leak"
        )
        assert "is disqualified" in _organiser_page(app, "/disqualify/team/ann", reason="sharing")
    mine = {s["id"]: s for s in client.get(f"{URL}/submissions", headers=ann).get_json()}
    assert mine[contest["better"]]["status"] == "disqualified"
    assert mine[contest["better"]]["disqualified_reason"] == "leak"
    team = client.get(f"{URL}/team", headers=ann).get_json()["team"]
    assert team["disqualified_reason"] == "sharing"
    assert client.get(f"{URL}/leaderboard").get_json()["rows"] == []


@pytest.mark.parametrize("via", ["api", "page"])
def test_a_started_round_changes_only_what_is_safe(app, client, contest, via):
    def change(**fields) -> str:
        if via == "api":
            answer = client.patch(f"{URL}/rounds/1", json=fields, headers=contest["organiser"])
            return "" if answer.status_code == 200 else answer.get_json()["error"]["message"]
        current = client.get(URL).get_json()["rounds"][0]
        form = {
            f"r1-{key}": current[key]
            for key in ("name", "metric", "daily_quota", "total_quota", "public_fraction")
        }
        form["r1-final_selections"] = current["final_selections"]
        for key in ("starts_at", "ends_at"):
            form[f"r1-{key}"] = current[key].removesuffix("Z")
        form.update({f"r1-{key}": value for key, value in fields.items()})
        message = _organiser_page(app, "/rounds/1", **form)
        return "" if message == "round 1 saved" else message

    assert "not public_fraction" in change(public_fraction=0.9)
    assert change(daily_quota=7) == ""
    assert client.get(URL).get_json()["rounds"][0]["daily_quota"] == 7
    assert change(metric="macro_f1") == ""  # scores every submission again
    assert db.session.scalar(db.select(Submission.status).limit(1)) == "scoring"


@pytest.mark.parametrize("via", ["api", "page"])
def test_rescore_and_export_alike(app, client, contest, via):
    if via == "api":
        queued = client.post(f"{URL}/rounds/1/rescore", headers=contest["organiser"])
        assert queued.get_json()["queued"] == 2
        exported = client.get(f"{URL}/rounds/1/ranking.csv", headers=contest["organiser"])
    else:
        assert "2 submissions are scored again" in _organiser_page(app, "/rounds/1/rescore")
        browser, _ = log_in(app, "olga")
        exported = browser.get(f"/competitions/{SLUG}/rounds/1/ranking.csv")
    assert exported.status_code == 200
    assert exported.get_data(as_text=True).splitlines()[0].startswith("rank,team,members")
    # Only organisers: a participant is refused on both.
    assert client.get(f"{URL}/rounds/1/ranking.csv", headers=contest["ann"]).status_code == 403
    browser, _ = log_in(app, "ann")
    assert browser.get(f"/competitions/{SLUG}/rounds/1/ranking.csv").status_code == 403
    assert browser.get(f"/competitions/{SLUG}/organise").status_code == 403


def test_a_board_reads_the_same_on_the_page_and_the_api_and_pages_past_100_rows(app, client, redis):
    from portal.models import CompetitionTeam, Round, User

    organiser = factories.headers(factories.token(factories.user("olga")))
    assert create(client, organiser).status_code == 201
    round_ = db.session.scalar(db.select(Round))
    owner = db.session.scalar(db.select(User).where(User.username == "olga"))
    for n in range(130):  # scored submissions of 130 teams, as the grader leaves them
        team = CompetitionTeam(
            competition_id=round_.competition_id, name=f"team{n:03d}", invite_code=f"c{n}"
        )
        db.session.add(team)
        db.session.flush()
        db.session.add(
            Submission(
                round_id=round_.id,
                team_id=team.id,
                user_id=owner.id,
                source="file",
                status="scored",
                public_score=n / 1000,
                private_score=n / 1000,
                scored_revision=round_.revision,
            )
        )
    db.session.commit()
    api = client.get(f"{URL}/leaderboard?offset=100&limit=100").get_json()
    assert api["total"] == 130 and [r["rank"] for r in api["rows"]] == list(range(101, 131))
    page = Browser(app).get(f"/competitions/{SLUG}/rounds/1/leaderboard?page=2")
    text = page.get_data(as_text=True)
    shown = re.findall(r"<tr><td>(\d+)</td><td><span class=\"swatch\"[^>]*></span>(\w+)</td>", text)
    assert [(int(rank), team) for rank, team in shown] == [
        (row["rank"], row["team"]) for row in api["rows"]
    ]
    assert "page 2 of 2" in text and 'id="live-state"' not in text  # a later page is not live
    first = Browser(app).get(f"/competitions/{SLUG}/rounds/1/leaderboard").get_data(as_text=True)
    assert len(re.findall(r"<tr><td>\d+</td>", first)) == 100 and 'id="live-state"' in first
    # The organiser's panel pages every team's submissions, 50 a page, filters kept.
    browser, _ = log_in(app, "olga")
    panel = browser.get(f"/competitions/{SLUG}/organise?page=2&status=scored")
    text = panel.get_data(as_text=True)
    assert panel.status_code == 200 and "page 2 of 3" in text
    assert "page=3" in text and "status=scored" in text
    assert len(re.findall(r'<tr data-submission="\d+">', text)) == 50


@pytest.mark.parametrize("via", ["api", "page"])
def test_a_checkpoint_is_submitted_alike_and_its_grading_session_cannot_be(app, client, redis, via):
    from portal.models import Checkpoint, Session

    organiser = factories.headers(factories.token(factories.user("olga")))
    assert create(client, organiser).status_code == 201
    ann_user = factories.user("ann")
    ann = factories.headers(factories.token(ann_user))
    trained = factories.session(ann_user)
    db.session.add(Checkpoint(session_id=trained.id, name="7", digest="0" * 64, size=1))
    db.session.commit()

    def send(ref: str) -> str:
        if via == "api":
            answer = client.post(f"{URL}/submissions/session", json={"session": ref}, headers=ann)
            return "" if answer.status_code == 201 else answer.get_json()["error"]["message"]
        browser, token = log_in(app, "ann")
        page = browser.get(f"/competitions/{SLUG}").get_data(as_text=True)
        assert f'value="{ref}"' in page or ref.startswith("grade/")  # offered in the picker
        answer = browser.post(
            f"/competitions/{SLUG}/submit/session",
            data={"csrf_token": token, "checkpoint": ref},
            follow_redirects=True,
        )
        return flash_error(answer.get_data(as_text=True))

    assert send(f"{trained.ident}:7") == ""
    mine = client.get(f"{URL}/submissions", headers=ann).get_json()
    assert [s["status"] for s in mine] == ["grading"]
    grading = mine[0]["grading_session"]
    assert grading.startswith("grade/")
    graded = db.session.get(Session, int(grading.split("/")[1]))
    assert graded.kind == "grading" and graded.number < 0  # none of ann's numbers
    assert "is a grading session" in send(f"{grading}:7")
    assert len(client.get(f"{URL}/submissions", headers=ann).get_json()) == 1


def test_a_round_edit_that_changes_nothing_real_is_refused_or_ignored(app, client, redis):
    organiser = factories.headers(factories.token(factories.user("olga")))
    spec = factories.competition_spec(SLUG, rounds=2)
    assert create(client, organiser, spec=spec).status_code == 201

    def patch(number, **fields):
        answer = client.patch(f"{URL}/rounds/{number}", json=fields, headers=organiser)
        return answer.status_code, (answer.get_json().get("error") or {}).get("message", "")

    status, message = patch(1, higher_is_better=False)  # accuracy: higher is better
    assert status == 422 and "only a custom metric chooses" in message
    rounds = client.get(URL).get_json()["rounds"]
    status, message = patch(2, starts_at=rounds[0]["starts_at"])  # into round 1
    assert status == 422 and "must start after round 1 ends" in message
    status, message = patch(1, ends_at=rounds[1]["ends_at"])
    assert status == 422 and "must end before round 2 starts" in message
    assert client.get(URL).get_json()["rounds"] == rounds  # nothing changed
