"""Small builders for test data, through the same services the API uses."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from portal.models import Level, User
from portal.services import auth, nodes, sessions
from tests.conftest import JOIN_TOKEN


def user(username: str = "ada", *, admin: bool = False, level: Level = Level.TRUSTED) -> User:
    """A user; trusted unless said otherwise, as most tests run sessions on local nodes
    (the tests of what an untrusted stranger may do pass `level=Level.USER`)."""
    return auth.create_user(username, f"{username}-password", level=Level.ADMIN if admin else level)


def token(owner: User) -> str:
    return auth.issue_token(owner, ttl=timedelta(days=1))


def headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def node(
    name: str = "node-a",
    *,
    gpus: int = 0,
    cpus: int = 8,
    memory_mb: int = 32768,
    runtime: str = "local",
    operators: list[str] | None = None,
    model: str = "TestGPU",
    gpu_memory_mb: int = 16384,
):
    registered, secret = nodes.register_node(
        JOIN_TOKEN,
        "",
        JOIN_TOKEN,
        name=name,
        hostname=name,
        cpu_count=cpus,
        memory_mb=memory_mb,
        runtime=runtime,
        operators=operators,
        gpus=[
            {"index": i, "model": model, "memory_mb": gpu_memory_mb, "simulated": True}
            for i in range(gpus)
        ],
    )
    return registered, secret


def session(
    owner: User,
    *,
    gpus: int = 0,
    memory_mb: int = 1024,
    cpus: float = 1.0,
    redis=None,
    code_digest: str | None = None,
    gpu_models: tuple[str, ...] = (),
    gpu_milli: int = 0,
    gpu_memory_mb: int = 0,
):
    request = sessions.SessionRequest(
        entry="train.py",
        code_digest=code_digest or hashlib.sha256(b"code").hexdigest(),
        gpus=gpus,
        gpu_milli=gpu_milli,
        gpu_memory_mb=gpu_memory_mb,
        cpus=cpus,
        memory_mb=memory_mb,
        gpu_models=gpu_models,
    )
    return sessions.create_session(owner, request, redis=redis)


def competition_files(rows: int = 40, classes: int = 3, seed: int = 1) -> dict[str, bytes]:
    """Test inputs (`id,x`) and labels (`id,label`) of a small classification task."""
    import random

    rng = random.Random(seed)
    ids = [f"r{i:03d}" for i in range(rows)]
    labels = [rng.randrange(classes) for _ in ids]
    inputs = "id,x\n" + "".join(f"{i},{rng.random():.4f}\n" for i in ids)
    truth = "id,label\n" + "".join(f"{i},{y}\n" for i, y in zip(ids, labels, strict=True))
    return {"test.csv": inputs.encode(), "labels.csv": truth.encode()}


def competition_spec(slug: str = "toy", *, rounds: int = 1, **round_fields) -> dict:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    spec_rounds = []
    for number in range(rounds):
        start = now - timedelta(hours=1) + timedelta(days=10 * number)
        spec_rounds.append(
            {
                "name": f"Round {number + 1}",
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(days=5)).isoformat(),
                "test_inputs": "test.csv",
                "labels": "labels.csv",
                "metric": "accuracy",
                "public_fraction": 0.5,
                **round_fields,
            }
        )
    return {"slug": slug, "title": slug.title(), "team_size_limit": 2, "rounds": spec_rounds}


def predictions(files: dict[str, bytes], correct: int, *, wrong_label: str = "9") -> bytes:
    """A predictions file right on the first `correct` rows."""
    lines = files["labels.csv"].decode().splitlines()[1:]
    out = ["id,prediction"]
    for n, line in enumerate(lines):
        ident, label = line.split(",")
        out.append(f"{ident},{label if n < correct else wrong_label}")
    return ("\n".join(out) + "\n").encode()
