"""Small builders for test data, through the same services the API uses."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from portal.models import User
from portal.services import auth, nodes, sessions
from tests.conftest import JOIN_TOKEN


def user(username: str = "ada", *, admin: bool = False) -> User:
    return auth.create_user(username, f"{username}-password", is_admin=admin)


def token(owner: User) -> str:
    return auth.issue_token(owner, ttl=timedelta(days=1))


def headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def node(name: str = "node-a", *, gpus: int = 0, cpus: int = 8, memory_mb: int = 32768):
    registered, secret = nodes.register_node(
        JOIN_TOKEN,
        JOIN_TOKEN,
        name=name,
        hostname=name,
        cpu_count=cpus,
        memory_mb=memory_mb,
        runtime="local",
        gpus=[{"index": i, "model": "TestGPU", "simulated": True} for i in range(gpus)],
    )
    return registered, secret


def session(owner: User, *, gpus: int = 0, memory_mb: int = 1024, cpus: float = 1.0, redis=None):
    request = sessions.SessionRequest(
        entry="train.py",
        code_digest=hashlib.sha256(b"code").hexdigest(),
        gpus=gpus,
        cpus=cpus,
        memory_mb=memory_mb,
    )
    return sessions.create_session(owner, request, redis=redis)
