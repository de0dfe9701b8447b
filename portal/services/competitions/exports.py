"""The final ranking of a round, as CSV, for its organisers."""

from __future__ import annotations

import csv
import io

from redis import Redis
from sqlalchemy import select

from portal.extensions import db
from portal.models import Competition, CompetitionTeam, Round, User
from portal.services.competitions import boards
from portal.services.competitions.core import find_round, require_organiser


def ranking_csv(round_: Round, redis: Redis | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "rank",
            "team",
            "members",
            "private_score",
            "public_score",
            "submission",
            "submitted_at",
            "submissions",
        ]
    )
    teams = {
        t.id: t
        for t in db.session.scalars(
            select(CompetitionTeam).where(CompetitionTeam.competition_id == round_.competition_id)
        )
    }
    for row in boards.private_board(redis, round_):
        members = " ".join(sorted(m.user.username for m in teams[row["team_id"]].members))
        writer.writerow(
            [
                row["rank"],
                row["team"],
                members,
                row["score"],
                row["public_score"],
                row["submission"],
                row["best_at"],
                row["submissions"],
            ]
        )
    return out.getvalue()


def ranking(user: User, competition: Competition, number: int, redis: Redis | None) -> str:
    """A round's final (private) ranking as CSV, for its organisers."""
    require_organiser(user, competition)
    return ranking_csv(find_round(competition, number), redis)
