"""Two real scheduler processes on a real Redis: one leads, the other takes over when
the leader is killed, and no session is placed twice."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from redis import Redis
from sqlalchemy import func, select

from portal import keys
from portal.extensions import db
from portal.models import Allocation, Session, SessionStatus
from tests import factories
from tests.conftest import build_app


@pytest.fixture
def cluster_db(tmp_path, redis_url):
    instance = tmp_path / "instance"
    url = f"sqlite:///{tmp_path / 'podium.db'}"
    app = build_app(instance, url, redis_url)
    with app.app_context():
        factories.user("ada")
        factories.node("big", gpus=64, cpus=4096, memory_mb=10**8)
    Redis.from_url(redis_url).flushdb()
    return app, url, instance


def start_scheduler(url, instance, redis_url):
    env = dict(
        os.environ,
        DATABASE_URL=url,
        REDIS_URL=redis_url,
        PODIUM_INSTANCE=str(instance),
        PODIUM_SECRET_KEY="test",
        PODIUM_NODE_LOST_AFTER_SECONDS="600",
        PODIUM_SCHEDULER_LEASE_SECONDS="2",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(instance.parent / f"scheduler-{time.monotonic_ns()}.log").open("w"),
    )


def leader_pid(redis: Redis, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = redis.get(keys.SCHEDULER_LEADER)
        if holder:
            return int(holder.decode().split(":")[1])
        time.sleep(0.02)
    raise AssertionError("no scheduler took the lead")


def test_the_standby_takes_over_within_3_seconds_and_places_each_session_once(
    cluster_db, redis_url
):
    app, url, instance = cluster_db
    redis = Redis.from_url(redis_url)
    schedulers = [start_scheduler(url, instance, redis_url) for _ in range(2)]
    try:
        first = leader_pid(redis)
        assert first in {p.pid for p in schedulers}
        created: list[int] = []

        def submit():
            with app.app_context():
                ada = db.session.scalar(
                    select(factories.User).where(factories.User.username == "ada")
                )
                for _ in range(40):
                    created.append(factories.session(ada, gpus=1, redis=redis).id)
                    time.sleep(0.05)

        submitter = threading.Thread(target=submit)
        submitter.start()
        time.sleep(0.6)
        os.kill(first, 9)
        killed_at = time.monotonic()
        while True:
            holder = redis.get(keys.SCHEDULER_LEADER)
            if holder and int(holder.decode().split(":")[1]) != first:
                break
            assert time.monotonic() - killed_at < 5, "the standby never took over"
            time.sleep(0.01)
        takeover = time.monotonic() - killed_at
        submitter.join()
        assert takeover < 3.0, f"takeover took {takeover:.2f} s"

        with app.app_context():
            deadline = time.monotonic() + 20
            while db.session.scalar(
                select(func.count(Session.id)).where(Session.status == SessionStatus.PENDING.value)
            ):
                assert time.monotonic() < deadline, "sessions stayed pending"
                time.sleep(0.1)
                db.session.remove()
            allocations = db.session.scalars(select(Allocation)).all()
            assert len(allocations) == len(created) == 40
            assert len({a.session_id for a in allocations}) == 40
            assert len({a.gpu_index for a in allocations}) == 40
        # Each start is queued once, just after its placement is committed.
        expected = sorted(f"start-{i}" for i in created)

        def queued() -> list[str]:
            return sorted(
                json.loads(job)["id"] for job in redis.lrange(keys.node_work("big"), 0, -1)
            )

        deadline = time.monotonic() + 10
        while queued() != expected and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queued() == expected
    finally:
        for process in schedulers:
            process.kill()
            process.wait()
