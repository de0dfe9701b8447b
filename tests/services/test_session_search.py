"""The sessions list: filters, order by a metric, pages."""

import pytest

from portal.errors import ApiError
from portal.extensions import db
from portal.services import metrics
from portal.services.sessions import SessionFilter, search_sessions
from tests import factories


@pytest.fixture
def sessions(app):
    ada = factories.user("ada")
    made = []
    for args, memo, loss in (
        ("--lr 0.1 --epochs 3", "baseline", 0.5),
        ("--lr=0.01 --epochs 3", "smaller lr", 0.2),
        ("--lr 0.1 --epochs 30", "longer", None),
        ("--lr 0.10", "", 0.9),
    ):
        run = factories.session(ada)
        run.args, run.memo = args, memo
        db.session.commit()
        if loss is not None:
            metrics.record(
                run, {"events": [{"tag": "loss", "step": 1, "value": loss, "wall_time": 1.0}]}
            )
        made.append(run)
    return ada, made


def idents(found):
    return [s.ident for s in found[0]]


def test_filters_and_metric_order(sessions):
    ada, made = sessions
    everything = search_sessions(ada, SessionFilter())
    assert everything[1] == 4 and idents(everything) == [s.ident for s in reversed(made)]
    assert idents(search_sessions(ada, SessionFilter(argument="lr=0.1"))) == [
        made[2].ident,
        made[0].ident,
    ]
    assert idents(search_sessions(ada, SessionFilter(argument="lr=0.01"))) == [made[1].ident]
    assert idents(search_sessions(ada, SessionFilter(memo="lr"))) == [made[1].ident]
    by_loss = search_sessions(ada, SessionFilter(metric="loss", by="min", descending=False))
    # Lowest loss first; the session that reported none comes last.
    assert idents(by_loss) == [made[1].ident, made[0].ident, made[3].ident, made[2].ident]
    page = search_sessions(ada, SessionFilter(offset=1, limit=2))
    assert page[1] == 4 and idents(page) == [made[2].ident, made[1].ident]
    with pytest.raises(ApiError, match="NAME=VALUE"):
        search_sessions(ada, SessionFilter(argument="lr"))


def test_others_sessions_are_not_listed(sessions):
    eve = factories.user("eve")
    assert search_sessions(eve, SessionFilter(everyone=True)) == ([], 0)
