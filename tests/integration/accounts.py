from portal import create_app
from portal.services.auth import create_user as create


def create_user(stack, username: str, password: str) -> None:
    """Accounts are made by administrators on the server; tests do it the same way."""
    app = create_app({"INSTANCE_PATH": str(stack.instance), "REDIS_URL": None})
    with app.app_context():
        create(username, password)
