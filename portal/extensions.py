"""Flask extensions, created unbound here and bound to an app in `create_app`."""

from collections.abc import Callable

from flask import current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_talisman import Talisman
from flask_wtf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
login_manager = LoginManager()
csrf = CSRFProtect()
talisman = Talisman()

# What pages may load: their own scripts only (plots come as JSON that a static script
# embeds; no inline script anywhere), which may compile code (`unsafe-eval`: Bokeh builds
# its CustomJS callbacks, the zoom's, with `new Function`), styles inline too (Bokeh
# lays plots out with them), nothing framed.
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": ["'self'", "'unsafe-eval'"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "connect-src": "'self'",
    "font-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def credentials_key() -> str:
    """Password attempts count per address and username, so that guessing one
    account's password is slow and one noisy address does not lock out the others."""
    body = request.get_json(silent=True) if request.is_json else None
    username = (body or {}).get("username") if isinstance(body, dict) else None
    username = username or request.form.get("username") or ""
    return f"{get_remote_address()}|{str(username)[:64]}"


limiter = Limiter(key_func=get_remote_address)


def _configured(name: str) -> Callable[[], str]:
    return lambda: current_app.config[name]


def login_limited(view: Callable) -> Callable:
    """Password attempts, on the API and the pages together: per address and username
    (`AUTH_RATE_LIMIT`: one account guessed slowly), and per address whatever the
    username (`ADDRESS_AUTH_RATE_LIMIT`: one address trying a password on many)."""
    view = limiter.shared_limit(
        _configured("AUTH_RATE_LIMIT"), scope="login", key_func=credentials_key, methods=["POST"]
    )(view)
    return limiter.shared_limit(
        _configured("ADDRESS_AUTH_RATE_LIMIT"), scope="login-address", methods=["POST"]
    )(view)


def signup_limited(view: Callable) -> Callable:
    """New accounts, on the API and the pages together, per address whatever the
    username (`SIGNUP_RATE_LIMIT`)."""
    return limiter.shared_limit(_configured("SIGNUP_RATE_LIMIT"), scope="signup", methods=["POST"])(
        view
    )
