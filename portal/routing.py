"""URL converters shared by the API and the pages."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter

# The largest value the database's integer columns hold (SQLite's and PostgreSQL's
# BIGINT): a larger id in a path names nothing, rather than overflowing the query.
DATABASE_INT_MAX = 2**63 - 1


class DatabaseInt(IntegerConverter):
    """`<int:...>` that matches only numbers a database id can be."""

    def __init__(self, map, *args, **kwargs) -> None:
        kwargs.setdefault("max", DATABASE_INT_MAX)
        super().__init__(map, *args, **kwargs)
