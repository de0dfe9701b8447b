"""Pages carry a content security policy without inline script, refuse framing and
sniffing; cookies are HttpOnly and SameSite, and Secure behind TLS."""

from __future__ import annotations

from tests import factories
from tests.conftest import build_app


def test_pages_say_what_they_may_load(app, client):
    response = client.get("/login")
    policy = response.headers["Content-Security-Policy"]
    assert (
        "script-src 'self'" in policy
        and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    )
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in response.get_data(as_text=True)  # no inline script to allow
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP here


def log_in(client) -> str:
    factories.user("ada")
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    answer = client.post(
        "/login",
        data={"username": "ada", "password": "ada-password", "csrf_token": token, "remember": "y"},
    )
    return "\n".join(answer.headers.getlist("Set-Cookie"))


def test_cookies_are_http_only_and_same_site(app, client):
    cookies = log_in(client)
    assert "HttpOnly" in cookies and "SameSite=Lax" in cookies
    assert "Secure" not in cookies  # a plain HTTP site would lose them


def test_behind_tls_cookies_are_secure_and_browsers_keep_to_it(
    tmp_path, database_url, redis_url, redis
):
    app = build_app(
        tmp_path / "tls", database_url, redis_url, PUBLIC_URL="https://podium.example.org"
    )
    with app.app_context():
        client = app.test_client()
        cookies = log_in(client)
        assert "Secure" in cookies and "HttpOnly" in cookies
        answer = client.get("/login", base_url="https://podium.example.org")
        assert "max-age" in answer.headers["Strict-Transport-Security"]
