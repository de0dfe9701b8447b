from portal.extensions import db
from portal.models import User
from tests import factories
from tests.conftest import build_app


def test_sign_up_then_log_in(client):
    made = client.post(
        "/api/v1/auth/users",
        json={"username": "nia", "password": "long-enough", "email": "nia@example.org"},
    )
    assert made.status_code == 201, made.get_json()
    assert made.get_json() == {
        "username": "nia",
        "is_admin": False,
        "level": "user",
        "active": True,
        "email": "nia@example.org",
    }
    user = db.session.scalar(db.select(User).where(User.username == "nia"))
    assert user.credit == 0.0  # GPUs wait for an administrator's credit
    token = client.post("/api/v1/auth/tokens", json={"username": "nia", "password": "long-enough"})
    assert token.status_code == 201
    again = client.post("/api/v1/auth/users", json={"username": "nia", "password": "x" * 9})
    assert again.status_code == 409
    short = client.post("/api/v1/auth/users", json={"username": "ole", "password": "short"})
    assert short.status_code == 422 and "password" in short.get_json()["error"]["message"]


def test_sign_up_can_be_closed(tmp_path, database_url, redis_url, redis):
    app = build_app(tmp_path / "closed", database_url, redis_url, SIGNUP="closed")
    with app.app_context():
        answer = app.test_client().post(
            "/api/v1/auth/users", json={"username": "nia", "password": "long-enough"}
        )
        assert answer.status_code == 403
        assert answer.get_json()["error"]["code"] == "signup_closed"
        assert db.session.scalar(db.select(db.func.count(User.id))) == 0
        db.session.remove()
        db.engine.dispose()


def test_guessing_a_password_is_rate_limited(tmp_path, database_url, redis_url, redis):
    app = build_app(tmp_path / "limited", database_url, redis_url, AUTH_RATE_LIMIT="3 per minute")
    with app.app_context():
        factories.user("ada")
        client = app.test_client()
        codes = [
            client.post(
                "/api/v1/auth/tokens", json={"username": "ada", "password": "guess"}
            ).status_code
            for _ in range(4)
        ]
        assert codes == [401, 401, 401, 429]
        body = client.post(
            "/api/v1/auth/tokens", json={"username": "ada", "password": "ada-password"}
        )
        assert body.status_code == 429 and set(body.get_json()) == {"error"}
        # Another account from the same address is not locked out by it.
        factories.user("bea")
        other = client.post(
            "/api/v1/auth/tokens", json={"username": "bea", "password": "bea-password"}
        )
        assert other.status_code == 201
        db.session.remove()
        db.engine.dispose()


def _portal(tmp_path, database_url, redis_url, **config):
    return build_app(tmp_path / "portal", database_url, redis_url, **config)


def _token(client, username: str, password: str = "long-enough"):
    return client.post("/api/v1/auth/tokens", json={"username": username, "password": password})


def test_where_sign_up_needs_approval_an_account_waits_for_an_administrator(
    tmp_path, database_url, redis_url, redis
):
    app = _portal(tmp_path, database_url, redis_url, SIGNUP="approval")
    with app.app_context():
        client = app.test_client()
        made = client.post(
            "/api/v1/auth/users", json={"username": "nia", "password": "long-enough"}
        )
        assert made.status_code == 201 and made.get_json()["active"] is False
        refused = _token(client, "nia")
        assert refused.status_code == 403
        assert refused.get_json()["error"]["code"] == "account_inactive"
        admin = factories.headers(factories.token(factories.user("root", admin=True)))
        user = factories.headers(factories.token(factories.user("ada")))
        assert (
            client.patch("/api/v1/users/nia", json={"active": True}, headers=user).status_code
            == 403
        )
        approved = client.patch("/api/v1/users/nia", json={"active": True}, headers=admin)
        assert approved.status_code == 200 and approved.get_json()["active"] is True
        token = _token(client, "nia")
        assert token.status_code == 201
        nia = factories.headers(token.get_json()["token"])
        assert client.get("/api/v1/auth/me", headers=nia).status_code == 200
        # Suspended: the token it holds stops working at once.
        client.patch("/api/v1/users/nia", json={"active": False}, headers=admin)
        assert client.get("/api/v1/auth/me", headers=nia).status_code == 403
        db.session.remove()
        db.engine.dispose()


def test_where_sign_up_needs_an_invitation_a_code_admits_as_many_as_it_says(
    tmp_path, database_url, redis_url, redis
):
    app = _portal(tmp_path, database_url, redis_url, SIGNUP="invitation")
    with app.app_context():
        client = app.test_client()
        admin = factories.headers(factories.token(factories.user("root", admin=True)))
        body = {"username": "nia", "password": "long-enough"}
        refused = client.post("/api/v1/auth/users", json=body)
        assert refused.status_code == 403
        assert refused.get_json()["error"]["code"] == "invitation_required"
        wrong = client.post("/api/v1/auth/users", json={**body, "invitation": "inv_guess"})
        assert wrong.status_code == 403
        code = client.post("/api/v1/users/invitations", json={"uses": 1}, headers=admin)
        assert code.status_code == 201
        invitation = code.get_json()["code"]
        assert (
            client.post("/api/v1/auth/users", json={**body, "invitation": invitation}).status_code
            == 201
        )
        used_up = client.post(
            "/api/v1/auth/users",
            json={"username": "ole", "password": "long-enough", "invitation": invitation},
        )
        assert used_up.status_code == 403
        assert db.session.scalar(db.select(db.func.count(User.id))) == 2
        db.session.remove()
        db.engine.dispose()


def test_levels_are_granted_by_administrators_only(client):
    admin = factories.headers(factories.token(factories.user("root", admin=True)))
    made = client.post("/api/v1/auth/users", json={"username": "nia", "password": "long-enough"})
    assert made.get_json()["level"] == "user"
    nia = factories.headers(_token(client, "nia").get_json()["token"])
    assert (
        client.patch("/api/v1/users/nia", json={"level": "trusted"}, headers=nia).status_code == 403
    )
    assert client.get("/api/v1/users", headers=nia).status_code == 403
    granted = client.patch("/api/v1/users/nia", json={"level": "organiser"}, headers=admin)
    assert granted.get_json()["level"] == "organiser"
    bad = client.patch("/api/v1/users/nia", json={"level": "root"}, headers=admin)
    assert bad.status_code == 422
    last = client.patch("/api/v1/users/root", json={"level": "user"}, headers=admin)
    assert last.status_code == 409 and "last administrator" in last.get_json()["error"]["message"]
    listed = {
        u["username"]: u["level"] for u in client.get("/api/v1/users", headers=admin).get_json()
    }
    assert listed == {"nia": "organiser", "root": "admin"}


def _log_in(client, username: str, password: str) -> str:
    """Logs in through the form; the page's CSRF token for later forms."""
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    answer = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )
    assert answer.status_code == 302
    return token


def test_administrators_approve_and_set_levels_on_the_accounts_page(
    tmp_path, database_url, redis_url, redis
):
    from portal.models import Level

    app = _portal(tmp_path, database_url, redis_url, SIGNUP="approval")
    with app.app_context():
        factories.user("root", admin=True)
        factories.user("ada", level=Level.USER)
        client = app.test_client()
        assert client.post(
            "/api/v1/auth/users", json={"username": "nia", "password": "long-enough"}
        ).get_json() == {
            "username": "nia",
            "is_admin": False,
            "level": "user",
            "active": False,
            "email": None,
        }
        # Not a page for others: it answers as if it did not exist.
        _log_in(client, "ada", "ada-password")
        assert client.get("/admin/users").status_code == 404
        client.post("/logout", data={"csrf_token": _log_in(client, "ada", "ada-password")})
        token = _log_in(client, "root", "root-password")
        page = client.get("/admin/users").get_data(as_text=True)
        assert "waiting for approval" in page and "account-nia" in page
        approve = {"csrf_token": token, "level": "user", "active": "1"}
        assert client.post("/admin/users/nia", data=approve).status_code == 302
        promote = {"csrf_token": token, "level": "trusted"}
        assert client.post("/admin/users/nia", data=promote).status_code == 302
        nia = db.session.scalar(db.select(User).where(User.username == "nia"))
        db.session.refresh(nia)
        assert nia.active and nia.level == "trusted"
        refused = client.post("/admin/users/root", data={"csrf_token": token, "level": "user"})
        assert refused.status_code == 302
        assert "last administrator" in client.get("/admin/users").get_data(as_text=True)
        db.session.remove()
        db.engine.dispose()


def test_one_address_cannot_sign_up_without_end(tmp_path, database_url, redis_url, redis):
    app = build_app(tmp_path / "limited", database_url, redis_url, SIGNUP_RATE_LIMIT="5 per hour")
    with app.app_context():
        client = app.test_client()
        codes = [
            client.post(
                "/api/v1/auth/users", json={"username": f"bot{n}", "password": "long-password"}
            ).status_code
            for n in range(30)
        ]
        assert codes == [201] * 5 + [429] * 25
        # The pages count with the API: the form is refused too.
        page = client.get("/signup").get_data(as_text=True)
        token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
        form = {"username": "bot99", "password": "long-password", "confirm": "long-password"}
        assert client.post("/signup", data={**form, "csrf_token": token}).status_code == 429
        assert db.session.scalar(db.select(db.func.count(User.id))) == 5
        # Another address still signs up.
        other = client.post(
            "/api/v1/auth/users",
            json={"username": "human", "password": "long-password"},
            environ_base={"REMOTE_ADDR": "10.0.0.7"},
        )
        assert other.status_code == 201
        db.session.remove()
        db.engine.dispose()


def test_one_password_tried_on_many_accounts_is_rate_limited(
    tmp_path, database_url, redis_url, redis
):
    app = build_app(
        tmp_path / "limited", database_url, redis_url, ADDRESS_AUTH_RATE_LIMIT="10 per minute"
    )
    with app.app_context():
        for n in range(12):
            factories.user(f"user{n}")
        client = app.test_client()
        codes = [
            client.post(
                "/api/v1/auth/tokens", json={"username": f"user{n}", "password": "Summer2026"}
            ).status_code
            for n in range(12)
        ]
        assert codes == [401] * 10 + [429] * 2
        # From another address, the right password works.
        right = client.post(
            "/api/v1/auth/tokens",
            json={"username": "user11", "password": "user11-password"},
            environ_base={"REMOTE_ADDR": "10.0.0.8"},
        )
        assert right.status_code == 201
        db.session.remove()
        db.engine.dispose()


def test_behind_a_trusted_proxy_each_client_is_counted_apart(
    tmp_path, database_url, redis_url, redis
):
    app = build_app(
        tmp_path / "proxied",
        database_url,
        redis_url,
        SIGNUP_RATE_LIMIT="1 per hour",
        TRUSTED_PROXIES=1,
    )
    with app.app_context():
        client = app.test_client()

        def sign_up(name: str, forwarded: str) -> int:
            return client.post(
                "/api/v1/auth/users",
                json={"username": name, "password": "long-password"},
                headers={"X-Forwarded-For": forwarded},
            ).status_code

        assert [sign_up("a1", "198.51.100.1"), sign_up("a2", "198.51.100.1")] == [201, 429]
        assert sign_up("b1", "198.51.100.2") == 201
        db.session.remove()
        db.engine.dispose()
