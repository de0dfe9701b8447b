"""Timestamps are stored as naive UTC datetimes and sent as ISO 8601 with a Z."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def isoformat(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"


def shown(moment: datetime | None) -> str:
    """How pages show a moment: UTC to the second, without the ISO punctuation."""
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")
