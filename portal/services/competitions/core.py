"""Competitions: lookup, who may see and run them, the state of a round, and the rules
of entry every submission path applies.

A user is in at most one team per competition; someone who submits alone becomes a
team of one named after them. Organisers (and administrators) manage a competition;
everyone else sees what its visibility allows.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from portal.errors import ApiError, Conflict, Forbidden, NotFound
from portal.extensions import db
from portal.models import Competition, CompetitionMember, CompetitionTeam, Round, User
from portal.timeutil import utcnow


class RoundState(enum.StrEnum):
    UPCOMING = "upcoming"
    OPEN = "open"
    ENDED = "ended"


CUSTOM = "custom"


class SpecError(ApiError):
    def __init__(self, message: str):
        super().__init__(message, code="invalid_spec", status=422)


def is_organiser(user: User | None, competition: Competition) -> bool:
    return user is not None and (user.is_admin or user.id == competition.organiser_id)


def membership(user: User | None, competition: Competition) -> CompetitionMember | None:
    if user is None:
        return None
    return db.session.scalar(
        select(CompetitionMember).where(
            CompetitionMember.competition_id == competition.id,
            CompetitionMember.user_id == user.id,
        )
    )


def can_view(user: User | None, competition: Competition) -> bool:
    """public: listed, everyone; unlisted: anyone with its slug; private: a draft that
    only its organisers (and administrators) see until they open it."""
    return competition.visibility != "private" or is_organiser(user, competition)


def find(user: User | None, slug: str) -> Competition:
    competition = db.session.scalar(select(Competition).where(Competition.slug == slug))
    if competition is None or not can_view(user, competition):
        raise NotFound(f"no competition {slug!r}")
    return competition


def listed(user: User | None) -> list[Competition]:
    everything = db.session.scalars(select(Competition).order_by(Competition.created_at.desc()))
    return [
        c
        for c in everything
        if is_organiser(user, c)
        or c.visibility == "public"
        or (c.visibility != "private" and membership(user, c) is not None)
    ]


def edit(user: User, competition: Competition, changes: Mapping[str, Any]) -> Competition:
    """Title, description and visibility any time; the team size limit until the first
    round starts."""
    require_organiser(user, competition)
    if "team_size_limit" in changes and any(
        round_state(r) != RoundState.UPCOMING for r in competition.rounds
    ):
        raise Conflict("the team size limit is fixed once the first round has started")
    for key in ("title", "description", "visibility", "team_size_limit"):
        if key in changes:
            setattr(competition, key, changes[key])
    db.session.commit()
    return competition


def require_organiser(user: User, competition: Competition) -> None:
    if not is_organiser(user, competition):
        raise Forbidden("only the competition's organisers can do this")


def require_organiser_level(user: User) -> None:
    """Creating competitions is a level administrators grant: an organiser's scorer runs
    on the platform (isolated), and their competitions reach every participant."""
    if not user.may_organise:
        raise Forbidden(
            "creating competitions needs the organiser level: ask an administrator "
            f"(`podium user set-level {user.username} organiser`)",
            code="needs_organiser",
        )


def find_round(competition: Competition, number: int | None) -> Round:
    """Round `number`, or with None the round open now (else the latest that started,
    else the first)."""
    if not competition.rounds:
        raise NotFound(f"{competition.slug} has no rounds")
    if number is not None:
        for round_ in competition.rounds:
            if round_.number == number:
                return round_
        raise NotFound(f"{competition.slug} has no round {number}")
    now = utcnow()
    started = [r for r in competition.rounds if r.starts_at <= now]
    open_now = [r for r in started if now < r.ends_at]
    return (open_now or started or competition.rounds)[-1 if not open_now else 0]


def current(competition: Competition) -> tuple[Round | None, RoundState | None]:
    """The round a visitor cares about now (`find_round`'s choice) and its state."""
    if not competition.rounds:
        return None, None
    round_ = find_round(competition, None)
    return round_, round_state(round_)


def open_now(viewer: User | None) -> list[tuple[Competition, Round]]:
    """The competitions listed to `viewer` that take submissions now, with the open
    round, the one closing soonest first."""
    found = []
    for competition in listed(viewer):
        round_, state = current(competition)
        if round_ is not None and state == RoundState.OPEN:
            found.append((competition, round_))
    return sorted(found, key=lambda pair: pair[1].ends_at)


def round_state(round_: Round, now: datetime | None = None) -> RoundState:
    now = now or utcnow()
    if now < round_.starts_at:
        return RoundState.UPCOMING
    return RoundState.OPEN if now < round_.ends_at else RoundState.ENDED


def may_submit(team: CompetitionTeam | None, round_: Round, qualified: set[int] | None) -> None:
    """Raise unless `team` (None: the team of one a first submission makes) may submit
    to `round_` now. `qualified`: the team ids that advanced from the previous round
    (None when every team may enter)."""
    state = round_state(round_)
    if state != RoundState.OPEN:
        raise Conflict(f"round {round_.number} is {state}: it takes no submissions now")
    if team is not None and team.disqualified_reason:
        raise Forbidden(f"team {team.name} is disqualified: {team.disqualified_reason}")
    if qualified is not None and (team is None or team.id not in qualified):
        raise Forbidden(
            f"{'team ' + team.name if team else 'you'} did not advance to round "
            f"{round_.number}: only the top teams of round {round_.number - 1} submit here"
        )


def split_key(salt: str, ident: str) -> bytes:
    """Rows are ordered by this key; the first `public_fraction` of them are public."""
    return hashlib.sha256(f"{salt}:{ident}".encode()).digest()[:8]
