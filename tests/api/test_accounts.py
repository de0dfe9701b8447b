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
    assert made.get_json() == {"username": "nia", "is_admin": False, "email": "nia@example.org"}
    user = db.session.scalar(db.select(User).where(User.username == "nia"))
    assert user.credit_gpu_hours == 0.0  # GPUs wait for an administrator's credit
    token = client.post("/api/v1/auth/tokens", json={"username": "nia", "password": "long-enough"})
    assert token.status_code == 201
    again = client.post("/api/v1/auth/users", json={"username": "nia", "password": "x" * 9})
    assert again.status_code == 409
    short = client.post("/api/v1/auth/users", json={"username": "ole", "password": "short"})
    assert short.status_code == 422 and "password" in short.get_json()["error"]["message"]


def test_sign_up_can_be_closed(tmp_path, database_url, redis_url, redis):
    app = build_app(tmp_path / "closed", database_url, redis_url, SIGNUP_OPEN=False)
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
