"""The schema is built by the Alembic revisions, which must match the models."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade
from sqlalchemy import inspect, select, text

from portal import MIGRATIONS_DIR
from portal.extensions import db


def test_a_single_head():
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    assert len(script.get_heads()) == 1


def test_the_migrations_build_exactly_the_models(app):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []
    tables = set(inspect(db.engine).get_table_names())
    assert set(db.metadata.tables) <= tables


def test_downgrade_to_base_removes_everything(app):
    downgrade(revision="base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}


def test_scalars_reported_before_the_metrics_store_are_all_kept(app):
    """Revision 0008 moves every point of the old one-row-per-point table into series."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from portal.models import Session
    from portal.services import metrics
    from tests import factories

    run_id = factories.session(factories.user("ada")).id
    db.session.close()
    downgrade(revision="0007_environments")
    points = [(step, step * 0.5, 1000.0 + step) for step in range(3000)] + [(5, 9.0, 1.0)]
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO scalars (session_id, tag, step, value, wall_time) "
                "VALUES (:s, :t, :step, :value, :wall)"
            ),
            [
                {"s": run_id, "t": tag, "step": step, "value": value, "wall": wall}
                for tag in ("loss", "acc")
                for step, value, wall in points
            ],
        )
    upgrade()
    run = db.session.get(Session, run_id)
    assert metrics.tags(run) == ["acc", "loss"]
    steps, values, _walls = metrics.raw(run, "loss")
    assert steps.size == 3001
    assert sorted(zip(steps.tolist(), values.tolist(), strict=True)) == sorted(
        (step, value) for step, value, _ in points
    )
    line = metrics.line(run, "loss", points=100)
    assert line["step"][-1] == 2999 and line["value"][-1] == 1499.5
    # From the summary, moved into blocks by 0009: the first block holds the minimum.
    assert (min(line["value"]), max(line["value"])) == (0.0, 1499.5)


def test_revision_0011_keeps_sessions_their_logs_and_balances(app):
    """0011 renames the balance and adds columns to `users` and `sessions` in place: a
    copy of either table would delete, by cascade, the rows that refer to it."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from portal.models import LogLine, Session, User
    from tests import factories

    ada = factories.user("ada")
    run = factories.session(ada)
    db.session.add(LogLine(session_id=run.id, seq=0, text="hello"))
    db.session.commit()
    run_id = run.id
    db.session.close()
    downgrade(revision="0010_round_inputs")
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE users SET credit_gpu_hours = 42.5"))
    for step in (upgrade, lambda: downgrade(revision="0010_round_inputs"), upgrade):
        step()
        db.session.close()
    assert db.session.get(Session, run_id) is not None
    assert db.session.query(LogLine).filter_by(session_id=run_id).count() == 1
    assert db.session.query(User).filter_by(username="ada").one().credit == 42.5


def test_revision_0016_keeps_allocations_and_new_ones_follow(app, redis):
    """0016 lets several rows name one GPU: allocations made before it are kept, and
    those made after take new ids (on PostgreSQL the table is altered in place, so its
    id sequence goes on); a downgrade keeps one row per GPU held."""
    from flask_migrate import upgrade

    from portal.models import Allocation, Node
    from scheduler.loop import Scheduler
    from tests import factories

    ada = factories.user("ada")
    factories.node("n", gpus=3)
    before = factories.session(ada, gpus=1).id
    db.session.close()
    downgrade(revision="0015_migration_on_drain")
    with db.engine.begin() as connection:
        node_id = connection.execute(select(Node.id)).scalar_one()
        connection.execute(
            text("UPDATE sessions SET status = 'running', node_id = :n WHERE id = :s"),
            {"n": node_id, "s": before},
        )
        for index in range(2):  # ids from the table's own sequence
            connection.execute(
                text(
                    "INSERT INTO allocations (session_id, node_id, gpu_index) VALUES (:s, :n, :i)"
                ),
                {"s": before, "n": node_id, "i": index},
            )
    upgrade()
    ada = db.session.merge(ada)
    after = factories.session(ada, gpu_milli=500)
    factories.session(ada, gpu_milli=400)
    placed = Scheduler(app, redis).run_pass()
    assert len(placed) == 2
    rows = sorted((a.gpu_index, a.milli) for a in db.session.query(Allocation))
    assert rows == [(0, 1000), (1, 1000), (2, 400), (2, 500)]
    assert after.gpu_indices == "2"
    db.session.close()
    downgrade(revision="0015_migration_on_drain")
    with db.engine.connect() as connection:
        kept = connection.execute(text("SELECT gpu_index FROM allocations ORDER BY gpu_index"))
        assert [index for (index,) in kept] == [0, 1, 2]
    upgrade()
