"""Leaderboards: a cache in Redis over the database, which stays the source of truth.

Public board of round R (keys `podium:lb:R:*`): a sorted set of one member per team,
`MILLISECONDS:SUBMISSION:TEAM` of the team's best scored submission, scored so that
ascending order is best first (scores are negated where higher is better). Equal
scores fall back to the member's text, so the earlier submission ranks first. Hashes
beside it hold each team's best member, name, submission count and last submission.

The grader offers each new score with one Lua script (kept only if it beats the team's
best). When the keys are missing (Redis restarted, a rescore, a disqualification),
the next reader rebuilds them from the database; offers made while a rebuild runs are
queued and replayed after it, so none is lost. The "ready" mark names the Redis server
run that built the board: a Redis restarted from a snapshot (a minute old, say) brings
back a board that misses the last scores, and the database wins over it. Every change
bumps a version and is published on `podium:lb:R`, which the live pages listen to.

Private boards (after the round ends) are computed from the database and cached whole.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from sqlalchemy import and_, func, select

from portal import keys
from portal.errors import ApiError, Conflict
from portal.extensions import db
from portal.models import (
    COUNTED_STATUSES,
    Competition,
    CompetitionTeam,
    Round,
    Submission,
    SubmissionStatus,
    User,
)
from portal.services.competitions.core import RoundState, is_organiser, round_state
from portal.timeutil import isoformat

REBUILD_LOCK_SECONDS = 120

_OFFER = """
if redis.call('EXISTS', KEYS[3]) == 0 then
  if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('RPUSH', KEYS[5], ARGV[4]) end
  return -1
end
local old = redis.call('HGET', KEYS[2], ARGV[1])
local score = tonumber(ARGV[2])
if old then
  local previous = tonumber(redis.call('ZSCORE', KEYS[1], old))
  if score > previous or (score == previous and ARGV[3] >= old) then return 0 end
  redis.call('ZREM', KEYS[1], old)
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""

_COUNT = """
if redis.call('EXISTS', KEYS[3]) == 0 then
  if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('RPUSH', KEYS[5], ARGV[4]) end
  return -1
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local last = redis.call('HGET', KEYS[2], ARGV[1])
if (not last) or tonumber(last) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 1
"""


# Versions only grow, even across a Redis that lost its data: never below the clock in
# milliseconds, so a page cached in a process is never taken for a newer one.
_BUMP = """
local version = redis.call('INCR', KEYS[1])
local now = tonumber(ARGV[1])
if version < now then
  redis.call('SET', KEYS[1], now)
  version = now
end
return version
"""


channel = keys.board
_key = keys.board_part


EPOCH = datetime(1970, 1, 1)


def _ms(moment: datetime) -> int:
    """Milliseconds since the epoch of a naive UTC datetime, exactly."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def stored_score(score: float, higher_is_better: bool) -> float:
    return -score if higher_is_better else score


def member(created_at: datetime, submission_id: int, team_id: int) -> str:
    return f"{_ms(created_at):013d}:{submission_id:010d}:{team_id}"


RUN_ID_SECONDS = 1.0  # how long a process trusts the Redis run it last asked about
_RUN_IDS: dict[int, tuple[float, str]] = {}


def server_run(redis: Redis) -> str:
    """The id of the Redis server's current run (new at each start), asked at most once
    a second per connection pool."""
    pool = id(redis.connection_pool)
    now = time.monotonic()
    known = _RUN_IDS.get(pool)
    if known is not None and known[0] > now:
        return known[1]
    run_id = str(redis.info("server")["run_id"])
    _RUN_IDS[pool] = (now + RUN_ID_SECONDS, run_id)
    return run_id


@dataclass
class Board:
    redis: Redis
    round_id: int
    higher_is_better: bool

    def key(self, part: str) -> str:
        return _key(self.round_id, part)

    def _guard_keys(self) -> list[str]:
        return [self.key("ready"), self.key("building"), self.key("pending")]

    # Writes ---------------------------------------------------------------------------

    def offer(self, team_id: int, submission_id: int, score: float, created_at: datetime) -> int:
        """Keep `score` if it is the team's best; 1 kept, 0 not better, -1 no cache."""
        op = json.dumps(["offer", team_id, submission_id, score, _ms(created_at)])
        return int(
            self.redis.eval(
                _OFFER,
                5,
                self.key("z"),
                self.key("best"),
                *self._guard_keys(),
                str(team_id),
                repr(stored_score(score, self.higher_is_better)),
                member(created_at, submission_id, team_id),
                op,
            )
        )

    def count(self, team_id: int, team_name: str, created_at: datetime) -> int:
        """A submission that counts was accepted."""
        self.redis.hset(self.key("names"), str(team_id), team_name)
        op = json.dumps(["count", team_id, team_name, _ms(created_at)])
        return int(
            self.redis.eval(
                _COUNT,
                5,
                self.key("count"),
                self.key("last"),
                *self._guard_keys(),
                str(team_id),
                str(_ms(created_at)),
                op,
            )
        )

    def _bump(self) -> int:
        return int(self.redis.eval(_BUMP, 1, self.key("version"), int(time.time() * 1000)))

    def changed(self) -> int:
        version = self._bump()
        self.redis.delete(self.key("private"))
        self.redis.publish(channel(self.round_id), version)
        return version

    def invalidate(self) -> None:
        """Drop the cache: the next reader rebuilds it from the database."""
        self.redis.delete(
            *(self.key(p) for p in ("ready", "z", "best", "count", "last", "names", "private"))
        )
        self.changed()

    # Rebuild --------------------------------------------------------------------------

    def is_ready(self, mark: Any = None) -> bool:
        """Built in this run of the Redis server (`mark`: the "ready" value, read)."""
        if mark is None:
            mark = self.redis.get(self.key("ready"))
        if isinstance(mark, bytes):
            mark = mark.decode()
        return mark is not None and mark == server_run(self.redis)

    def ensure(self) -> None:
        if self.is_ready():
            return
        run = server_run(self.redis)
        token = f"{run}:{time.monotonic_ns()}"
        if not self.redis.set(self.key("building"), token, nx=True, ex=REBUILD_LOCK_SECONDS):
            held = self.redis.get(self.key("building"))
            holder = held.decode() if isinstance(held, bytes) else str(held or "")
            if holder.split(":")[0] == run:
                # Someone else rebuilds: wait for it, briefly.
                for _ in range(200):
                    time.sleep(0.05)
                    if self.is_ready():
                        return
                return
            # A lock of an earlier run, restored from a snapshot: nobody holds it.
            self.redis.delete(self.key("building"))
            if not self.redis.set(self.key("building"), token, nx=True, ex=REBUILD_LOCK_SECONDS):
                return
        try:
            # Offers from now on wait in the queue, not in a board about to be replaced.
            self.redis.delete(self.key("ready"))
            self._rebuild()
        finally:
            self._replay()
            self.redis.delete(self.key("building"))
            self._replay()
            self._bump()  # what was built is a version of its own

    def _rebuild(self) -> None:
        teams = dict(
            db.session.execute(
                select(CompetitionTeam.id, CompetitionTeam.name)
                .join(Round, Round.competition_id == CompetitionTeam.competition_id)
                .where(Round.id == self.round_id)
            ).all()
        )
        eligible = select(CompetitionTeam.id).where(CompetitionTeam.disqualified_reason == "")
        best: dict[int, tuple[float, str]] = {}
        rows = db.session.execute(
            select(
                Submission.team_id, Submission.id, Submission.public_score, Submission.created_at
            ).where(
                Submission.round_id == self.round_id,
                Submission.status == SubmissionStatus.SCORED.value,
                Submission.disqualified_reason == "",
                Submission.public_score.is_not(None),
                Submission.team_id.in_(eligible),
            )
        )
        for team_id, submission_id, score, created_at in rows:
            entry = (
                stored_score(float(score or 0.0), self.higher_is_better),
                member(created_at, submission_id, team_id),
            )
            if team_id not in best or entry < best[team_id]:
                best[team_id] = entry
        counts = db.session.execute(
            select(Submission.team_id, func.count(Submission.id), func.max(Submission.created_at))
            .where(
                Submission.round_id == self.round_id,
                Submission.status.in_(COUNTED_STATUSES),
            )
            .group_by(Submission.team_id)
        ).all()
        db.session.rollback()  # end the read transaction: nothing was written
        pipe = self.redis.pipeline(transaction=True)
        for part in ("z", "best", "count", "last", "names", "private"):
            pipe.delete(self.key(part))
        if best:
            pipe.zadd(self.key("z"), {m: s for s, m in best.values()})
            pipe.hset(self.key("best"), mapping={str(t): m for t, (_, m) in best.items()})
        if counts:
            pipe.hset(self.key("count"), mapping={str(t): n for t, n, _ in counts})
            pipe.hset(self.key("last"), mapping={str(t): _ms(last) for t, _, last in counts})
        if teams:
            pipe.hset(self.key("names"), mapping={str(t): n for t, n in teams.items()})
        pipe.set(self.key("ready"), server_run(self.redis))
        pipe.execute()

    def _replay(self) -> None:
        while raw := self.redis.lpop(self.key("pending")):
            kind, *args = json.loads(raw)  # type: ignore[arg-type]
            if kind == "offer":
                team_id, submission_id, score, ms = args
                self.offer(team_id, submission_id, score, _from_ms(ms))
            else:
                team_id, name, ms = args
                self.count(team_id, name, _from_ms(ms))

    # Reads ----------------------------------------------------------------------------

    def version(self) -> int:
        return int(self.redis.get(self.key("version")) or 0)

    def cached_page(self, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """`page`, kept in this process until the board's version changes: a read costs
        one round trip to Redis, and a change pushed to many open pages is read once
        per process, not once per page."""
        key = (self.round_id, offset, limit)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.key("version"))
        pipe.get(self.key("ready"))
        raw_version, mark = pipe.execute()
        version = int(raw_version or 0)
        ready = self.is_ready(mark)
        hit = _PAGES.get(key)
        if ready and hit is not None and hit[0] == version:
            return hit[1]
        with _PAGES_LOCK:  # the first reader of a new version reads it for the others
            hit = _PAGES.get(key)
            if ready and hit is not None and hit[0] >= version:
                return hit[1]
            body = self.page(offset, limit)
            if len(_PAGES) > 1024:
                _PAGES.clear()
            _PAGES[key] = (body["version"], body)
            return body

    def page(self, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        self.ensure()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(self.key("z"), offset, offset + limit - 1, withscores=True)
        pipe.zcard(self.key("z"))
        pipe.get(self.key("version"))
        entries, total, version = pipe.execute()
        team_ids = [m.decode().rsplit(":", 1)[1] for m, _ in entries]
        pipe = self.redis.pipeline(transaction=False)
        if team_ids:
            pipe.hmget(self.key("names"), team_ids)
            pipe.hmget(self.key("count"), team_ids)
            pipe.hmget(self.key("last"), team_ids)
            names, counts, lasts = pipe.execute()
        rows = []
        for i, (raw_member, raw_score) in enumerate(entries):
            ms, submission_id, team_id = raw_member.decode().split(":")
            score = -raw_score if self.higher_is_better else raw_score
            rows.append(
                {
                    "rank": offset + i + 1,
                    "team": (names[i] or b"?").decode(),
                    "team_id": int(team_id),
                    "score": score,
                    "submission": int(submission_id),
                    "best_at": _iso_ms(int(ms)),
                    "submissions": int(counts[i] or 0),
                    "last_submission_at": _iso_ms(int(lasts[i])) if lasts[i] else None,
                }
            )
        return {"rows": rows, "total": int(total), "version": int(version or 0)}


# (round id, offset, limit) -> (version, page): see Board.cached_page.
_PAGES: dict[tuple[int, int, int], tuple[int, dict[str, Any]]] = {}
_PAGES_LOCK = threading.Lock()


def _iso_ms(ms: int) -> str | None:
    return isoformat(_from_ms(ms).replace(microsecond=0))


def board(redis: Redis, round_: Round) -> Board:
    return Board(redis, round_.id, round_.higher_is_better)


# Private board --------------------------------------------------------------------------


def private_rows(round_: Round) -> list[dict[str, Any]]:
    """The final ranking: per team, the best private score among its selected
    submissions, or among its best `final_selections` by public score when it selected
    none. Ties go to the earlier submission."""
    rows = db.session.execute(
        select(
            Submission.team_id,
            Submission.id,
            Submission.public_score,
            Submission.private_score,
            Submission.selected,
            Submission.created_at,
            CompetitionTeam.name,
        )
        .join(CompetitionTeam, CompetitionTeam.id == Submission.team_id)
        .where(
            and_(
                Submission.round_id == round_.id,
                Submission.status == SubmissionStatus.SCORED.value,
                Submission.disqualified_reason == "",
                CompetitionTeam.disqualified_reason == "",
                Submission.private_score.is_not(None),
            )
        )
    ).all()
    counts = dict(
        db.session.execute(
            select(Submission.team_id, func.count(Submission.id))
            .where(Submission.round_id == round_.id, Submission.status.in_(COUNTED_STATUSES))
            .group_by(Submission.team_id)
        ).all()
    )
    sign = -1.0 if round_.higher_is_better else 1.0
    by_team: dict[int, list] = {}
    for row in rows:
        by_team.setdefault(row.team_id, []).append(row)
    ranking = []
    for team_id, entries in by_team.items():
        chosen = [e for e in entries if e.selected]
        if not chosen:
            entries.sort(key=lambda e: (sign * e.public_score, e.created_at, e.id))
            chosen = entries[: round_.final_selections]
        best = min(chosen, key=lambda e: (sign * e.private_score, e.created_at, e.id))
        ranking.append((sign * best.private_score, best.created_at, best.id, team_id, best))
    ranking.sort(key=lambda r: r[:3])
    return [
        {
            "rank": i + 1,
            "team": best.name,
            "team_id": team_id,
            "score": best.private_score,
            "public_score": best.public_score,
            "submission": best.id,
            "best_at": isoformat(best.created_at),
            "submissions": counts.get(team_id, 0),
        }
        for i, (_, _, _, team_id, best) in enumerate(ranking)
    ]


def private_board(redis: Redis | None, round_: Round) -> list[dict[str, Any]]:
    key = _key(round_.id, "private")
    if redis is not None and (cached := redis.get(key)):
        body = json.loads(cached)
        if body.get("run") == server_run(redis):  # not a snapshot's, restored
            return body["rows"]
    rows = private_rows(round_)
    if redis is not None:
        redis.set(key, json.dumps({"run": server_run(redis), "rows": rows}), ex=3600)
    return rows


# What viewers see --------------------------------------------------------------------

PUBLIC, PRIVATE = "public", "private"


def shown_row(row: dict[str, Any]) -> dict[str, Any]:
    """A board's row as anyone may see it (without the team's internal id)."""
    return {key: value for key, value in row.items() if key != "team_id"}


def view(
    viewer: User | None,
    competition: Competition,
    round_: Round,
    which: str,
    offset: int,
    limit: int,
    redis: Redis | None,
) -> dict[str, Any]:
    """A page of a round's leaderboard: the public one, live; the private one once the
    round has ended (to its organisers at any time)."""
    state = round_state(round_)
    body: dict[str, Any] = {
        "competition": competition.slug,
        "round": round_.number,
        "board": which,
        "state": state.value,
        "metric": round_.metric,
        "higher_is_better": round_.higher_is_better,
    }
    if which == PRIVATE:
        if state != RoundState.ENDED and not is_organiser(viewer, competition):
            raise Conflict(f"the private leaderboard shows once round {round_.number} ends")
        rows = private_board(redis, round_)
        return {
            **body,
            "total": len(rows),
            "version": 0,
            "rows": [shown_row(row) for row in rows[offset : offset + limit]],
        }
    if redis is None:
        raise ApiError("the leaderboard needs Redis", code="unavailable", status=503)
    page = board(redis, round_).cached_page(offset, limit)
    return {**body, **page, "rows": [shown_row(row) for row in page["rows"]]}


def public_json(
    competition: Competition, round_: Round, offset: int, limit: int, redis: Redis | None
) -> str:
    """The public page as JSON text: the most read document of the platform, serialised
    once per board version and state."""
    body = view(None, competition, round_, PUBLIC, offset, limit, redis)
    key = (round_.id, offset, limit, body["state"], body["version"])
    with _SERIALISED_LOCK:
        text = _SERIALISED.get(key)
        if text is None:
            if len(_SERIALISED) > 1024:
                _SERIALISED.clear()
            text = _SERIALISED[key] = json.dumps(body)
    return text


# (round id, offset, limit, state, version) -> the public page's JSON.
_SERIALISED: dict[tuple, str] = {}
_SERIALISED_LOCK = threading.Lock()
