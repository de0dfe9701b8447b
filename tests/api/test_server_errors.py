"""Every input that once made a server error, each answered with a clear client error
and changing nothing (regressions found by probing the routes)."""

from __future__ import annotations

import pytest

from tests.competitions.test_competitions_api import setup  # noqa: F401

HUGE = "9" * 30


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", f"/api/v1/competitions/toy/submissions/{HUGE}"),
        ("post", f"/api/v1/competitions/toy/submissions/{HUGE}/select"),
        ("post", f"/api/v1/competitions/toy/submissions/{HUGE}/disqualify"),
        ("post", f"/api/v1/competitions/toy/submissions/{HUGE}/reproductions"),
        ("get", f"/api/v1/competitions/toy/reproductions/{HUGE}"),
        ("get", f"/api/v1/competitions/toy/rounds/{HUGE}/leaderboard"),
        ("get", f"/api/v1/internal/sessions/{HUGE}/spec"),
    ],
)
def test_a_huge_id_in_a_path_is_not_found(setup, client, method, path):  # noqa: F811
    response = getattr(client, method)(path, json={}, headers=setup["organiser"])
    assert response.status_code == 404, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/competitions/toy/leaderboard?offset=99999999999999999999",
        "/api/v1/competitions/toy/rounds/1/leaderboard?offset=99999999999999999999",
        "/api/v1/sessions?offset=99999999999999999999",
        "/api/v1/competitions/toy/submissions?round=99999999999999999999",
        "/api/v1/competitions/toy/reproductions?submission=99999999999999999999",
    ],
)
def test_a_huge_number_in_a_query_is_refused(setup, client, path):  # noqa: F811
    response = client.get(path, headers=setup["organiser"])
    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["code"] == "invalid_input"


def test_a_join_token_that_is_not_ascii_is_refused(client):
    response = client.post(
        "/api/v1/internal/nodes/register",
        json={"name": "n1", "cpu_count": 1, "memory_mb": 1024, "join_token": "jöin-tøken"},
    )
    assert response.status_code == 401, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["code"] == "bad_join_token"


def test_a_deeply_nested_json_body_is_refused(setup, client):  # noqa: F811
    body = "[" * 100_000 + "]" * 100_000
    response = client.post(
        "/api/v1/competitions/toy/teams",
        data=body,
        headers={**setup["ann"], "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "nest" in response.get_json()["error"]["message"]


def test_the_web_select_form_takes_only_a_submission_id(setup, app):  # noqa: F811
    from tests.competitions.test_use_cases import flash_error, log_in

    browser, token = log_in(app, "ann")
    for value in ("abc", HUGE, "-1"):
        form = {"csrf_token": token, "submission": value, "selected": "1"}
        answer = browser.post("/competitions/toy/select", data=form, follow_redirects=True)
        assert answer.status_code == 200, (value, answer.status_code)
        assert "no such submission" in flash_error(answer.get_data(as_text=True))


@pytest.mark.parametrize(
    "path",
    [
        f"/sessions?page={HUGE}",
        f"/competitions?page={HUGE}",
        f"/competitions/toy/organise?page={HUGE}&round={HUGE}",
        f"/notifications?before={HUGE}",
    ],
)
def test_a_huge_number_in_a_page_query_is_ignored(setup, app, path):  # noqa: F811
    from tests.competitions.test_use_cases import log_in

    browser, _ = log_in(app, "olga")
    assert browser.get(path).status_code == 200


def test_a_predictions_body_past_its_limit_is_refused_before_it_is_read(setup, client):  # noqa: F811
    from portal.services.competitions.grading import MAX_PREDICTIONS_BYTES

    too_big = b"0" * (MAX_PREDICTIONS_BYTES + 1)
    refused = client.post(
        "/api/v1/competitions/toy/submissions",
        data=too_big,
        headers={**setup["ann"], "Content-Type": "text/csv"},
    )
    assert refused.status_code == 413 and refused.get_json()["error"]["code"] == "too_large"


def test_a_predictions_file_with_a_huge_field_is_refused_clearly(setup, client):  # noqa: F811
    body = b"id,prediction\nr000," + b"7" * (8 * 2**20) + b"\n"
    refused = client.post(
        "/api/v1/competitions/toy/submissions",
        data=body,
        headers={**setup["ann"], "Content-Type": "text/csv"},
    )
    assert 400 <= refused.status_code < 500, refused.get_data(as_text=True)[:300]
