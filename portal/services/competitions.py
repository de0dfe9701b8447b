"""Competitions: creation from a spec, rounds and their edits, and competition teams.

A user is in at most one team per competition; someone who submits alone becomes a
team of one named after them. Organisers (and administrators) manage a competition;
everyone else sees what its visibility allows.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from grader.metrics import METRICS  # pure numpy: the portal checks labels against it
from portal.errors import ApiError, Conflict, Forbidden, NotFound
from portal.extensions import db
from portal.models import (
    Competition,
    CompetitionMember,
    CompetitionTeam,
    Round,
    Submission,
    TeamInvite,
    User,
)
from portal.services import datasets as dataset_service
from portal.services import sealing, tables
from portal.services.artifacts import ArtifactStore
from portal.timeutil import isoformat, utcnow

CUSTOM = "custom"


class SpecError(ApiError):
    def __init__(self, message: str):
        super().__init__(message, code="invalid_spec", status=422)


# Lookup and access -------------------------------------------------------------------


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
        if c.visibility == "public" or is_organiser(user, c) or membership(user, c) is not None
    ]


def edit(user: User, competition: Competition, changes: Mapping[str, Any]) -> Competition:
    """Title, description and visibility any time; the team size limit until the first
    round starts."""
    require_organiser(user, competition)
    if "team_size_limit" in changes and any(
        round_state(r) != "upcoming" for r in competition.rounds
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


def round_state(round_: Round, now: datetime | None = None) -> str:
    now = now or utcnow()
    if now < round_.starts_at:
        return "upcoming"
    return "open" if now < round_.ends_at else "ended"


# Creation from a spec ----------------------------------------------------------------


def _file(files: Mapping[str, bytes], name: str, what: str) -> bytes:
    if name not in files:
        raise SpecError(f"{what}: the file {name!r} was not uploaded with the spec")
    return files[name]


def _store_bytes(store: ArtifactStore, data: bytes) -> str:
    import io

    digest, _ = store.put(io.BytesIO(data), max_bytes=len(data) + 1)
    return digest


def _round_files(
    round_: Round,
    spec: Mapping[str, Any],
    files: Mapping[str, bytes],
    store: ArtifactStore,
    public_key: str,
    what: str,
) -> None:
    """Check and store a round's test inputs, labels and scorer."""
    inputs = _file(files, spec["test_inputs"], what)
    ids = tables.read_inputs(inputs)
    round_.inputs_digest = _store_bytes(store, inputs)
    round_.ids_digest = _store_bytes(store, "\n".join(ids).encode())
    round_.rows = len(ids)
    set_labels(round_, _file(files, spec["labels"], what), store, public_key, ids=ids)
    if round_.metric == CUSTOM:
        scorer = _file(files, spec.get("scorer") or "", what + " (metric custom needs scorer)")
        try:
            compile(scorer, "scorer.py", "exec")
        except (SyntaxError, ValueError) as exc:
            raise SpecError(f"{what}: the scorer is not valid Python: {exc}") from exc
        round_.scorer_digest = _store_bytes(store, scorer)


def set_labels(
    round_: Round,
    labels: bytes,
    store: ArtifactStore,
    public_key: str,
    *,
    ids: list[str] | None = None,
) -> None:
    """Check labels against the round's ids and metric, then keep them sealed."""
    if not public_key:
        raise ApiError(
            "the grader's public key is not configured", code="misconfigured", status=500
        )
    ids = ids if ids is not None else read_ids(store, round_)
    metric = METRICS.get(round_.metric)
    tables.read_column(
        labels,
        ids,
        columns=tables.LABEL_COLUMNS,
        what="labels file",
        numeric=bool(metric and metric.numeric),
        binary=bool(metric and metric.binary),
    )
    round_.labels_digest = _store_bytes(store, sealing.seal(public_key, labels))


def read_ids(store: ArtifactStore, round_: Round) -> list[str]:
    return store.path(round_.ids_digest).read_text().split("\n")


def _apply_round_fields(round_: Round, spec: Mapping[str, Any], what: str) -> None:
    for key in (
        "name",
        "starts_at",
        "ends_at",
        "daily_quota",
        "total_quota",
        "public_fraction",
        "final_selections",
        "advance_top",
        "time_limit_s",
        "memory_mb",
    ):
        if key in spec:
            value = spec[key]
            if isinstance(value, datetime) and value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)  # stored as naive UTC
            setattr(round_, key, value)
    if "metric" in spec:
        round_.metric = spec["metric"]
        if spec["metric"] == CUSTOM:
            if spec.get("higher_is_better") is None:
                raise SpecError(f"{what}: a custom metric needs higher_is_better")
            round_.higher_is_better = spec["higher_is_better"]
        else:
            round_.higher_is_better = METRICS[spec["metric"]].higher_is_better
    if round_.ends_at <= round_.starts_at:
        raise SpecError(f"{what}: it must end after it starts")


def require_organiser_level(user: User) -> None:
    """Creating competitions is a level administrators grant: an organiser's scorer runs
    on the platform (isolated), and their competitions reach every participant."""
    if not user.may_organise:
        raise Forbidden(
            "creating competitions needs the organiser level: ask an administrator "
            f"(`podium user set-level {user.username} organiser`)",
            code="needs_organiser",
        )


def create(
    organiser: User,
    spec: Mapping[str, Any],
    files: Mapping[str, bytes],
    store: ArtifactStore,
    public_key: str,
) -> Competition:
    """A competition from a validated spec (see docs/competitions.md) and its files."""
    require_organiser_level(organiser)
    if db.session.scalar(select(Competition.id).where(Competition.slug == spec["slug"])):
        raise Conflict(f"a competition {spec['slug']!r} exists already")
    competition = Competition(
        slug=spec["slug"],
        title=spec["title"],
        description=spec.get("description", ""),
        visibility=spec.get("visibility", "public"),
        team_size_limit=spec.get("team_size_limit", 1),
        organiser_id=organiser.id,
    )
    previous_end = None
    for number, round_spec in enumerate(spec["rounds"], start=1):
        what = f"round {number}"
        if round_spec.get("dataset"):
            dataset_service.find_version(organiser, round_spec["dataset"])  # must exist
        round_ = Round(number=number, dataset=round_spec.get("dataset", ""))
        round_.split_salt = secrets.token_hex(8)
        _apply_round_fields(round_, round_spec, what)
        if previous_end is not None and round_.starts_at < previous_end:
            raise SpecError(f"{what}: it must start after round {number - 1} ends")
        previous_end = round_.ends_at
        _round_files(round_, round_spec, files, store, public_key, what)
        competition.rounds.append(round_)
    db.session.add(competition)
    db.session.commit()
    return competition


def edit_round(
    user: User,
    competition: Competition,
    round_: Round,
    changes: Mapping[str, Any],
) -> bool:
    """Change a round. Before it starts, anything; once started, only the metric (every
    submission is then scored again). Returns whether scores must be recomputed."""
    require_organiser(user, competition)
    changes = dict(changes)
    if round_state(round_) != "upcoming":
        late = sorted(set(changes) - {"metric", "higher_is_better"})
        if late:
            raise Conflict(
                f"round {round_.number} has started: only its metric or labels can change, "
                f"not {', '.join(late)}"
            )
    if changes.get("metric") == CUSTOM and not round_.scorer_digest:
        raise SpecError("a custom metric needs a scorer: upload it when creating the round")
    if changes.get("metric") not in (None, CUSTOM):
        changes.pop("higher_is_better", None)
    rescore = "metric" in changes or "higher_is_better" in changes
    _apply_round_fields(round_, changes, f"round {round_.number}")
    if rescore:
        round_.revision += 1
    db.session.commit()
    return rescore


# Teams ---------------------------------------------------------------------------------


def _team_named(competition: Competition, name: str) -> CompetitionTeam:
    team = db.session.scalar(
        select(CompetitionTeam).where(
            CompetitionTeam.competition_id == competition.id, CompetitionTeam.name == name
        )
    )
    if team is None:
        raise NotFound(f"no team {name!r} in {competition.slug}")
    return team


def _check_joinable(user: User, competition: Competition) -> None:
    mine = membership(user, competition)
    if mine is not None:
        raise Conflict(
            f"you are in team {mine.team.name} of {competition.slug} already: leave it first"
        )


def _check_room(competition: Competition, team: CompetitionTeam) -> None:
    if len(team.members) >= competition.team_size_limit:
        raise Conflict(
            f"team {team.name} is full: {competition.slug} allows "
            f"{competition.team_size_limit} members"
        )


def create_team(user: User, competition: Competition, name: str) -> CompetitionTeam:
    _check_joinable(user, competition)
    if db.session.scalar(
        select(CompetitionTeam.id).where(
            CompetitionTeam.competition_id == competition.id, CompetitionTeam.name == name
        )
    ):
        raise Conflict(f"a team {name!r} exists in {competition.slug} already")
    team = CompetitionTeam(
        competition_id=competition.id, name=name, invite_code=secrets.token_urlsafe(12)
    )
    team.members.append(CompetitionMember(competition_id=competition.id, user_id=user.id))
    db.session.add(team)
    db.session.commit()
    return team


def team_of(user: User, competition: Competition, *, create: bool = False) -> CompetitionTeam:
    """The user's team here; with `create`, someone alone becomes a team of one."""
    mine = membership(user, competition)
    if mine is not None:
        return mine.team
    if not create:
        raise NotFound(f"you are in no team of {competition.slug}")
    name = user.username
    suffix = 1
    while db.session.scalar(
        select(CompetitionTeam.id).where(
            CompetitionTeam.competition_id == competition.id, CompetitionTeam.name == name
        )
    ):
        suffix += 1
        name = f"{user.username}-{suffix}"
    return create_team(user, competition, name)


def invite(user: User, competition: Competition, username: str) -> TeamInvite:
    team = team_of(user, competition)
    invited = db.session.scalar(select(User).where(User.username == username))
    if invited is None:
        raise NotFound(f"no user {username!r}")
    if any(m.user_id == invited.id for m in team.members):
        raise Conflict(f"{username} is in {team.name} already")
    _check_room(competition, team)
    existing = db.session.scalar(
        select(TeamInvite).where(TeamInvite.team_id == team.id, TeamInvite.user_id == invited.id)
    )
    if existing is not None:
        return existing
    invitation = TeamInvite(team_id=team.id, user_id=invited.id)
    db.session.add(invitation)
    db.session.commit()
    return invitation


def invites_for(user: User, competition: Competition) -> list[TeamInvite]:
    return list(
        db.session.scalars(
            select(TeamInvite)
            .join(CompetitionTeam)
            .where(TeamInvite.user_id == user.id, CompetitionTeam.competition_id == competition.id)
        )
    )


def join(
    user: User, competition: Competition, *, team: str | None = None, code: str | None = None
) -> CompetitionTeam:
    """Accept an invitation to `team`, or join with the team's invite code."""
    _check_joinable(user, competition)
    if code:
        target = db.session.scalar(
            select(CompetitionTeam).where(
                CompetitionTeam.competition_id == competition.id,
                CompetitionTeam.invite_code == code,
            )
        )
        if target is None:
            raise NotFound(f"no team of {competition.slug} has this invite code")
    elif team:
        target = _team_named(competition, team)
        invitation = db.session.scalar(
            select(TeamInvite).where(TeamInvite.team_id == target.id, TeamInvite.user_id == user.id)
        )
        if invitation is None:
            raise Forbidden(f"team {team} has not invited you: ask for an invitation or its code")
        db.session.delete(invitation)
    else:
        raise ApiError("name the team whose invitation you accept, or give an invite code")
    _check_room(competition, target)
    target.members.append(CompetitionMember(competition_id=competition.id, user_id=user.id))
    db.session.commit()
    return target


def leave(user: User, competition: Competition) -> None:
    """Leave one's team. A team left empty without submissions is removed; one with
    submissions stays on the leaderboard."""
    mine = membership(user, competition)
    if mine is None:
        raise NotFound(f"you are in no team of {competition.slug}")
    team = mine.team
    team.members.remove(mine)
    if not team.members and not db.session.scalar(
        select(func.count(Submission.id)).where(Submission.team_id == team.id)
    ):
        db.session.delete(team)
    db.session.commit()


def find_team(competition: Competition, name: str) -> CompetitionTeam:
    return _team_named(competition, name)


# Advancement ---------------------------------------------------------------------------


def may_submit(team: CompetitionTeam | None, round_: Round, qualified: set[int] | None) -> None:
    """Raise unless `team` (None: the team of one a first submission makes) may submit
    to `round_` now. `qualified`: the team ids that advanced from the previous round
    (None when every team may enter)."""
    state = round_state(round_)
    if state != "open":
        raise Conflict(f"round {round_.number} is {state}: it takes no submissions now")
    if team is not None and team.disqualified_reason:
        raise Forbidden(f"team {team.name} is disqualified: {team.disqualified_reason}")
    if qualified is not None and (team is None or team.id not in qualified):
        raise Forbidden(
            f"{'team ' + team.name if team else 'you'} did not advance to round "
            f"{round_.number}: only the top teams of round {round_.number - 1} submit here"
        )


# Views ----------------------------------------------------------------------------------


def round_dict(round_: Round) -> dict[str, Any]:
    return {
        "number": round_.number,
        "name": round_.name,
        "state": round_state(round_),
        "starts_at": isoformat(round_.starts_at),
        "ends_at": isoformat(round_.ends_at),
        "dataset": round_.dataset,
        "metric": round_.metric,
        "higher_is_better": round_.higher_is_better,
        "rows": round_.rows,
        "daily_quota": round_.daily_quota,
        "total_quota": round_.total_quota,
        "public_fraction": round_.public_fraction,
        "final_selections": round_.final_selections,
        "advance_top": round_.advance_top,
        "time_limit_s": round_.time_limit_s,
        "memory_mb": round_.memory_mb,
    }


def competition_dict(competition: Competition) -> dict[str, Any]:
    return {
        "slug": competition.slug,
        "title": competition.title,
        "description": competition.description,
        "visibility": competition.visibility,
        "team_size_limit": competition.team_size_limit,
        "organiser": competition.organiser.username,
        "rounds": [round_dict(r) for r in competition.rounds],
    }


def team_dict(team: CompetitionTeam, *, private: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": team.name,
        "members": sorted(m.user.username for m in team.members),
        "disqualified_reason": team.disqualified_reason,
    }
    if private:
        body["invite_code"] = team.invite_code
        body["invited"] = sorted(
            i.user.username
            for i in db.session.scalars(select(TeamInvite).where(TeamInvite.team_id == team.id))
        )
    return body


def split_key(salt: str, ident: str) -> bytes:
    """Rows are ordered by this key; the first `public_fraction` of them are public."""
    return hashlib.sha256(f"{salt}:{ident}".encode()).digest()[:8]
