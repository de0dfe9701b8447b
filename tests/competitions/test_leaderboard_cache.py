"""The leaderboard cache against the database it mirrors."""

from datetime import datetime, timedelta

from portal import keys
from portal.services.competitions.boards import Board, server_run


def test_offers_keep_each_teams_best_and_ties_go_to_the_earlier(redis):
    board = Board(redis, round_id=1, higher_is_better=True)
    redis.set(board.key("ready"), server_run(redis))  # an empty, built cache
    t0 = datetime(2026, 11, 1, 12, 0, 0)
    assert board.offer(team_id=1, submission_id=1, score=0.5, created_at=t0) == 1
    assert board.offer(team_id=1, submission_id=2, score=0.4, created_at=t0) == 0
    assert board.offer(team_id=1, submission_id=3, score=0.7, created_at=t0) == 1
    assert board.offer(team_id=2, submission_id=4, score=0.7, created_at=t0 - timedelta(1)) == 1
    assert board.offer(team_id=3, submission_id=5, score=0.7, created_at=t0 + timedelta(1)) == 1
    for team in (1, 2, 3):
        redis.hset(board.key("names"), str(team), f"team{team}")
    rows = board.page(0, 10)["rows"]
    assert [(r["team"], r["score"]) for r in rows] == [
        ("team2", 0.7),
        ("team1", 0.7),
        ("team3", 0.7),
    ]


def test_lower_is_better_boards_rank_ascending(redis):
    board = Board(redis, round_id=2, higher_is_better=False)
    redis.set(board.key("ready"), server_run(redis))
    now = datetime(2026, 11, 1)
    board.offer(1, 1, 3.5, now)
    board.offer(2, 2, 1.25, now)
    board.offer(1, 3, 0.5, now)
    assert [r["score"] for r in board.page()["rows"]] == [0.5, 1.25]


def test_offers_made_during_a_rebuild_are_replayed(redis):
    board = Board(redis, round_id=3, higher_is_better=True)
    redis.set(board.key("building"), "someone")
    assert board.offer(1, 1, 0.9, datetime(2026, 11, 1)) == -1  # queued, not lost
    assert redis.llen(board.key("pending")) == 1
    # The rebuild wrote what it read from the database.
    redis.set(board.key("ready"), server_run(redis))
    board._replay()
    assert redis.zcard(board.key("z")) == 1
    assert redis.llen(board.key("pending")) == 0


def test_without_a_cache_or_a_rebuild_offers_are_left_to_the_rebuild(redis):
    board = Board(redis, round_id=4, higher_is_better=True)
    assert board.offer(1, 1, 0.9, datetime(2026, 11, 1)) == -1
    assert not redis.exists(board.key("z")) and not redis.exists(board.key("pending"))


def test_one_subscription_wakes_every_waiting_page(redis):
    import threading
    import time

    from portal.live import Broadcaster
    from portal.services.competitions.boards import channel

    patterns = str(len(keys.LIVE_PATTERNS))
    listening_before = sum(1 for c in redis.client_list() if c.get("psub") == patterns)
    live = Broadcaster(redis)
    assert live.wait(channel(9), after=0, timeout=0.3) is None  # starts listening
    woken: list[int | None] = []
    waiters = [
        threading.Thread(target=lambda: woken.append(live.wait(channel(9), 0, timeout=10)))
        for _ in range(20)
    ]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.2)
    started = time.monotonic()
    redis.publish(channel(8), 5)  # another board: nobody here wakes for it
    redis.publish(channel(9), 1)
    for waiter in waiters:
        waiter.join(timeout=10)
    assert woken == [1] * 20
    assert time.monotonic() - started < 1
    # One connection, subscribed to the patterns of boards, node work and teams.
    clients = [c for c in redis.client_list() if c.get("psub") == patterns]
    assert len(clients) == listening_before + 1
    live.close()


def test_a_board_restored_from_an_older_snapshot_loses_to_the_database(app, client, tmp_path):
    """Redis restarted from its last snapshot brings back a built board without the
    scores that came after it: the next reader rebuilds it from the database."""
    from redis import Redis

    from grader import jobs
    from portal.api.code import artifact_store
    from portal.extensions import db
    from portal.models import Submission
    from portal.redis_server import EmbeddedRedis
    from tests import factories
    from tests.competitions.test_competitions_api import create, submit

    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    own = Redis.from_url(server.url)
    saved, app.extensions["redis"] = app.extensions["redis"], own
    try:
        olga = factories.headers(factories.token(factories.user("olga")))
        files = factories.competition_files()
        assert create(client, olga, files=files).status_code == 201
        ann = factories.headers(factories.token(factories.user("ann")))
        board = "/api/v1/competitions/toy/leaderboard"

        def scored(correct: int) -> None:
            submit(client, ann, factories.predictions(files, correct))
            latest = db.session.scalar(db.select(Submission.id).order_by(Submission.id.desc()))
            jobs.process(latest, own, artifact_store())

        scored(10)
        first = client.get(board).get_json()["rows"][0]
        own.save()  # the snapshot
        scored(40)
        assert client.get(board).get_json()["rows"][0]["score"] == 1.0
        server.process.kill()  # kill -9
        server.process.wait()
        server.start()  # the same port and folder: it loads the snapshot
        assert own.exists("podium:lb:1:ready")  # the old board came back, marked built
        row = client.get(board).get_json()["rows"][0]
        assert (row["score"], row["submissions"]) == (1.0, 2), (first, row)
    finally:
        app.extensions["redis"] = saved
        server.stop()
