"""Flask extensions, created unbound here and bound to an app in `create_app`."""

from flask import request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_talisman import Talisman
from flask_wtf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
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
    """Rate limits on logging in count per address and username, so that guessing one
    account's password is slow and one noisy address does not lock out the others."""
    body = request.get_json(silent=True) if request.is_json else None
    username = (body or {}).get("username") if isinstance(body, dict) else None
    username = username or request.form.get("username") or ""
    return f"{get_remote_address()}|{str(username)[:64]}"


limiter = Limiter(key_func=get_remote_address)
