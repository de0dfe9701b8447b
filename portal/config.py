"""Configuration: defaults here, then instance/config.py, then environment variables.

Nothing here reads the environment at import time; `load_config` is called by
`create_app`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from portal import keys

DEFAULTS: dict[str, Any] = {
    "MAX_CODE_BYTES": 100 * 1024 * 1024,
    # The code a user may hold in the store: each archive their sessions run, once, and
    # those uploaded in the last day that no session runs yet. Removing sessions frees it.
    "CODE_QUOTA_BYTES": 5 * 1024**3,
    # What a code archive may unpack to: a node refuses more, so the portal does first.
    "MAX_CODE_UNPACKED_BYTES": 8 * 1024**3,
    "MAX_CHECKPOINT_BYTES": 2 * 1024 * 1024 * 1024,
    "MAX_DATASET_BYTES": 10 * 1024**3,
    "MAX_DATASET_UNPACKED_BYTES": 50 * 1024**3,
    # An archive that unpacks to more than this many times its size (past 64 MiB) is
    # refused as a decompression bomb.
    "MAX_EXPANSION_RATIO": 100.0,
    "MAX_DATASET_FILES": 1_000_000,
    "TOKEN_TTL_DAYS": 30,
    "NODE_LOST_AFTER_SECONDS": 15,
    "DEFAULT_MEMORY_MB": 2048,
    "DEFAULT_CPUS": 1.0,
    "REDIS_URL": None,
    "NODE_JOIN_TOKEN": None,
    "SECRET_KEY": None,
    "PUBLIC_URL": None,
    # How many proxies in front of the portal name the client (X-Forwarded-For/-Proto/
    # -Host); 0 trusts no such header, as a client may send any.
    "TRUSTED_PROXIES": 0,
    "API_TITLE": "Podium API",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api/v1",
    "OPENAPI_JSON_PATH": "openapi.json",
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    "WTF_CSRF_TIME_LIMIT": None,
    # Attempts to log in, per address and username, and per address whatever the
    # username; new accounts per address (Flask-Limiter syntax; portal/extensions.py).
    "AUTH_RATE_LIMIT": "20 per minute;200 per hour",
    "ADDRESS_AUTH_RATE_LIMIT": "60 per minute;600 per hour",
    "SIGNUP_RATE_LIMIT": "5 per minute;20 per day",
    # Who may create an account: `open` (anyone, to enter competitions), `approval` (an
    # administrator approves each new account), `invitation` (a code from an
    # administrator), `closed`. New accounts are at the lowest level (their code runs
    # only in an isolating runtime) with this much credit.
    "SIGNUP": "open",
    "SIGNUP_CREDIT": 0.0,
    # Credit (portal/services/credits.py): what an hour of a GPU and of a CPU costs,
    # how often running sessions are charged, and how long a session whose owner ran
    # out has to checkpoint before it is stopped.
    "CREDIT_GPU_HOUR": 1.0,
    "CREDIT_CPU_HOUR": 0.0,
    "CREDIT_CHARGE_SECONDS": 60,
    "CREDIT_GRACE_SECONDS": 300,
    # How long a session asked to checkpoint by `node drain --migrate` has to save one;
    # past it, it is left to finish where it is.
    "MIGRATION_GRACE_SECONDS": 300,
    # The share of one GPU a grading session takes when the session it grades ran on
    # one GPU or a share of one (predicting rarely needs more); 0, or a training on
    # several GPUs: as many whole GPUs as that session had.
    "GRADING_GPU_SHARE": 0.25,
    # Serving (`podium serve`): the largest prediction request, and the largest input
    # file `podium infer` takes.
    "SERVE_MAX_BODY_BYTES": 1024 * 1024,
    "INFER_MAX_INPUT_BYTES": 256 * 1024 * 1024,
    # How often the scheduler records the cluster's state for its dashboard.
    "CLUSTER_SAMPLE_SECONDS": 60,
    # E-mail (portal/services/alerts.py): off while SMTP_HOST is unset. SMTP_SECURITY is
    # `none`, `starttls` or `tls` (SMTP over TLS from the first byte).
    "SMTP_HOST": None,
    "SMTP_PORT": 25,
    "SMTP_SECURITY": "none",
    "SMTP_USERNAME": None,
    "SMTP_PASSWORD": None,
    "SMTP_TIMEOUT_SECONDS": 10,
    "MAIL_FROM": "Podium <podium@localhost>",
    # The grader's public key: hidden labels are sealed to it (portal/services/sealing.py).
    "GRADER_PUBLIC_KEY": None,
}

# Environment variables read by Podium, and the config key each one sets.
ENVIRONMENT = {
    "DATABASE_URL": "SQLALCHEMY_DATABASE_URI",
    "REDIS_URL": "REDIS_URL",
    "PODIUM_SECRET_KEY": "SECRET_KEY",
    "PODIUM_NODE_JOIN_TOKEN": "NODE_JOIN_TOKEN",
    "PODIUM_PUBLIC_URL": "PUBLIC_URL",
    "PODIUM_TRUSTED_PROXIES": "TRUSTED_PROXIES",
    "PODIUM_MAX_CODE_BYTES": "MAX_CODE_BYTES",
    "PODIUM_CODE_QUOTA_BYTES": "CODE_QUOTA_BYTES",
    "PODIUM_MAX_DATASET_BYTES": "MAX_DATASET_BYTES",
    "PODIUM_MAX_DATASET_UNPACKED_BYTES": "MAX_DATASET_UNPACKED_BYTES",
    "PODIUM_MAX_EXPANSION_RATIO": "MAX_EXPANSION_RATIO",
    "PODIUM_NODE_LOST_AFTER_SECONDS": "NODE_LOST_AFTER_SECONDS",
    "PODIUM_GRADER_PUBLIC_KEY": "GRADER_PUBLIC_KEY",
    "PODIUM_AUTH_RATE_LIMIT": "AUTH_RATE_LIMIT",
    "PODIUM_ADDRESS_AUTH_RATE_LIMIT": "ADDRESS_AUTH_RATE_LIMIT",
    "PODIUM_SIGNUP_RATE_LIMIT": "SIGNUP_RATE_LIMIT",
    "PODIUM_SIGNUP": "SIGNUP",
    "PODIUM_SMTP_HOST": "SMTP_HOST",
    "PODIUM_SMTP_PORT": "SMTP_PORT",
    "PODIUM_SMTP_SECURITY": "SMTP_SECURITY",
    "PODIUM_SMTP_USERNAME": "SMTP_USERNAME",
    "PODIUM_SMTP_PASSWORD": "SMTP_PASSWORD",
    "PODIUM_MAIL_FROM": "MAIL_FROM",
    "PODIUM_CREDIT_GRACE_SECONDS": "CREDIT_GRACE_SECONDS",
    "PODIUM_MIGRATION_GRACE_SECONDS": "MIGRATION_GRACE_SECONDS",
    "PODIUM_CREDIT_CHARGE_SECONDS": "CREDIT_CHARGE_SECONDS",
    "PODIUM_CREDIT_GPU_HOUR": "CREDIT_GPU_HOUR",
    "PODIUM_CREDIT_CPU_HOUR": "CREDIT_CPU_HOUR",
    "PODIUM_CLUSTER_SAMPLE_SECONDS": "CLUSTER_SAMPLE_SECONDS",
    "PODIUM_GRADING_GPU_SHARE": "GRADING_GPU_SHARE",
    "PODIUM_SERVE_MAX_BODY_BYTES": "SERVE_MAX_BODY_BYTES",
    "PODIUM_INFER_MAX_INPUT_BYTES": "INFER_MAX_INPUT_BYTES",
}
INTEGER_KEYS = {
    "MAX_CODE_BYTES",
    "CODE_QUOTA_BYTES",
    "NODE_LOST_AFTER_SECONDS",
    "MAX_DATASET_BYTES",
    "MAX_DATASET_UNPACKED_BYTES",
    "SMTP_PORT",
    "SERVE_MAX_BODY_BYTES",
    "INFER_MAX_INPUT_BYTES",
}
FLOAT_KEYS = {
    "MAX_EXPANSION_RATIO",
    "CREDIT_GRACE_SECONDS",
    "MIGRATION_GRACE_SECONDS",
    "CREDIT_CHARGE_SECONDS",
    "CREDIT_GPU_HOUR",
    "CREDIT_CPU_HOUR",
    "CLUSTER_SAMPLE_SECONDS",
    "GRADING_GPU_SHARE",
}


def instance_path_from_env() -> Path:
    return Path(os.environ.get("PODIUM_INSTANCE", "instance")).resolve()


def load_config(instance_path: Path, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Defaults, overlaid by instance/config.py, overlaid by the environment."""
    environ = dict(os.environ if environ is None else environ)
    config = dict(DEFAULTS)
    config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{instance_path / 'podium.db'}"
    config["ARTIFACT_ROOT"] = str(instance_path / "artifacts")
    settings_file = instance_path / "config.py"
    if settings_file.exists():
        namespace: dict[str, Any] = {}
        exec(compile(settings_file.read_text(), str(settings_file), "exec"), namespace)
        config.update({k: v for k, v in namespace.items() if k.isupper()})
    for variable, key in ENVIRONMENT.items():
        if environ.get(variable):
            value: Any = environ[variable]
            if key in INTEGER_KEYS:
                value = int(value)
            elif key in FLOAT_KEYS:
                value = float(value)
            config[key] = value
    # Rate-limit counters live in Redis, shared by every gunicorn worker.
    config.setdefault("RATELIMIT_STORAGE_URI", config.get("REDIS_URL") or "memory://")
    config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    config.setdefault("RATELIMIT_KEY_PREFIX", keys.RATE_LIMITS)
    # Werkzeug's cap on any request body; each upload route applies its own limit.
    config["MAX_CONTENT_LENGTH"] = max(
        config["MAX_CODE_BYTES"], config["MAX_CHECKPOINT_BYTES"], config["MAX_DATASET_BYTES"]
    )
    return config
