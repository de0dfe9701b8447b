"""Flask extensions, created unbound here and bound to an app in `create_app`."""

from flask import request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()


def credentials_key() -> str:
    """Rate limits on logging in count per address and username, so that guessing one
    account's password is slow and one noisy address does not lock out the others."""
    body = request.get_json(silent=True) if request.is_json else None
    username = (body or {}).get("username") if isinstance(body, dict) else None
    username = username or request.form.get("username") or ""
    return f"{get_remote_address()}|{str(username)[:64]}"


limiter = Limiter(key_func=get_remote_address)
