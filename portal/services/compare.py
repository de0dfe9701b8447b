"""Comparing sessions: their curves overlaid, and their arguments side by side.

One home for what the comparison page, the API and `podium plot` show: which sessions a
viewer may compare (their own and their teammates', as for looking at one), each one's
line of a tag downsampled for a plot's width, and the arguments they share or not.
"""

from __future__ import annotations

import shlex
from typing import Any

from portal.errors import ApiError
from portal.models import Session, User
from portal.services import metrics
from portal.services import sessions as session_service

MAX_SESSIONS = 100


def resolve(viewer: User, idents: list[str]) -> list[Session]:
    """The sessions named, in the order named (each once); a session the viewer may not
    see is refused as if it did not exist."""
    names = list(dict.fromkeys(i.strip() for i in idents if i.strip()))
    if not names:
        raise ApiError("name the sessions to compare: s=USER/N,USER/N", code="invalid_input")
    if len(names) > MAX_SESSIONS:
        raise ApiError(
            f"{len(names)} sessions: a comparison holds at most {MAX_SESSIONS}",
            code="invalid_input",
        )
    return [session_service.find_session(viewer, name) for name in names]


def tags(sessions: list[Session]) -> list[str]:
    """The tags any of them reported, in name order."""
    return sorted({tag for session in sessions for tag in metrics.tags(session)})


def lines(
    sessions: list[Session],
    tag: str,
    points: int = 1000,
    start: int | None = None,
    end: int | None = None,
) -> list[dict[str, Any]]:
    """Each session's line of `tag` (sessions that did not report it are left out)."""
    found = metrics.lines([session.id for session in sessions], tag, points, start, end)
    return [
        {"session": session.ident, **found[session.id]}
        for session in sessions
        if session.id in found
    ]


def parse_arguments(text: str) -> dict[str, str]:
    """`--lr 0.1 --lr=0.1 --amp -v data.csv` → {"lr": "0.1", "amp": "true", "v": "true",
    "_1": "data.csv"}: options with their values (flags: "true"), positional
    arguments by position."""
    try:
        words = shlex.split(text)
    except ValueError:
        return {"_args": text}
    parsed: dict[str, str] = {}
    position = 0
    index = 0
    while index < len(words):
        word = words[index]
        if word.startswith("-") and len(word) > 1 and not _is_number(word):
            name, equals, value = word.lstrip("-").partition("=")
            if not equals:
                following = words[index + 1] if index + 1 < len(words) else None
                if following is not None and (
                    not following.startswith("-") or _is_number(following)
                ):
                    value = following
                    index += 1
                else:
                    value = "true"
            parsed[name] = value
        else:
            position += 1
            parsed[f"_{position}"] = word
        index += 1
    return parsed


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def arguments(sessions: list[Session]) -> dict[str, Any]:
    """What all the sessions share (once) and what differs (a matrix: session by
    argument, "" where one has no such argument)."""
    parsed = {session.ident: parse_arguments(session.args) for session in sessions}
    names = sorted({name for args in parsed.values() for name in args})
    shared = {}
    differing = []
    for name in names:
        values = {args.get(name) for args in parsed.values()}
        if len(values) == 1 and None not in values:
            shared[name] = values.pop()
        else:
            differing.append(name)
    return {
        "shared": shared,
        "differing": differing,
        "rows": [
            {"session": ident, "values": {name: args.get(name, "") for name in differing}}
            for ident, args in parsed.items()
        ],
    }


def metric_columns(sessions: list[Session], tag: str, higher_is_better: bool) -> dict[str, Any]:
    """Each session's best and last value of `tag`."""
    idents = {session.id: session.ident for session in sessions}
    return {
        idents[series.session_id]: {
            "best": series.max_value if higher_is_better else series.min_value,
            "last": series.last_value,
        }
        for series in metrics.series_named(list(idents), tag)
    }
