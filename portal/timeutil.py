"""Timestamps are stored as naive UTC datetimes and sent as ISO 8601 with a Z."""

from datetime import UTC, datetime

import humanize


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def isoformat(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"


def parse(moment: datetime | str | None) -> datetime | None:
    """A stored moment, or one sent as ISO 8601 (with a Z), as naive UTC."""
    if moment is None or isinstance(moment, datetime):
        return moment
    parsed = datetime.fromisoformat(moment.removesuffix("Z"))
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def relative(moment: datetime | str | None, now: datetime | None = None) -> str:
    """ "in 12 days", "3 hours ago", "just now"."""
    moment = parse(moment)
    if moment is None:
        return "—"
    delta = moment - (now or utcnow())
    if abs(delta.total_seconds()) < 45:
        return "just now"
    words = humanize.naturaldelta(abs(delta))
    return f"in {words}" if delta.total_seconds() > 0 else f"{words} ago"


def shown(moment: datetime | None) -> str:
    """How pages show a moment: UTC to the second, without the ISO punctuation."""
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")
