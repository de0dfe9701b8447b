"""metrics: scalars as compressed chunks per series with plot summaries, numbered batches

Revision ID: 0008_metrics
Revises: 0007_environments
Create Date: 2026-11-30 06:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_metrics'
down_revision = '0007_environments'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('scalar_chunks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.Column('first_step', sa.BigInteger(), nullable=False),
    sa.Column('last_step', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('scalar_chunks', schema=None) as batch_op:
        batch_op.create_index('ix_scalar_chunks_series', ['session_id', 'tag', 'first_step'], unique=False)
    op.create_table('scalar_series',
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('small_chunks', sa.Integer(), nullable=False),
    sa.Column('first_step', sa.BigInteger(), nullable=False),
    sa.Column('last_step', sa.BigInteger(), nullable=False),
    sa.Column('last_value', sa.Float(), nullable=False),
    sa.Column('first_wall', sa.Float(), nullable=False),
    sa.Column('last_wall', sa.Float(), nullable=False),
    sa.Column('min_value', sa.Float(), nullable=False),
    sa.Column('max_value', sa.Float(), nullable=False),
    sa.Column('bucket_width', sa.BigInteger(), nullable=False),
    sa.Column('summary', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_id', 'tag')
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('events_stream', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('events_seq', sa.BigInteger(), server_default='-1', nullable=False))
    _move_scalars()
    with op.batch_alter_table('scalars', schema=None) as batch_op:
        batch_op.drop_index('ix_scalars_session_tag_step')
    op.drop_table('scalars')


def _move_scalars():
    """Every point reported so far goes into the new series, summaries included."""
    import numpy as np

    from portal.services import metrics

    bind = op.get_bind()
    series = bind.execute(sa.text("SELECT DISTINCT session_id, tag FROM scalars")).all()
    chunks = sa.table(
        'scalar_chunks', sa.column('session_id'), sa.column('tag'), sa.column('first_step'),
        sa.column('last_step'), sa.column('count'), sa.column('data'),
    )
    for session_id, tag in series:
        rows = bind.execute(
            sa.text(
                "SELECT step, value, wall_time FROM scalars WHERE session_id = :s AND tag = :t "
                "ORDER BY step, id"
            ),
            {"s": session_id, "t": tag},
        ).all()
        steps = np.array([r[0] for r in rows], dtype=np.int64)
        values = np.array([r[1] for r in rows], dtype=np.float64)
        walls = np.array([r[2] for r in rows], dtype=np.float64)
        bind.execute(
            chunks.insert(),
            [{
                "session_id": session_id, "tag": tag, "first_step": int(steps[0]),
                "last_step": int(steps[-1]), "count": int(steps.size),
                "data": metrics._pack(steps, values, walls),
            }],
        )
        summary = metrics.Summary.empty()
        summary.add(metrics.Batch(tag, steps, values, walls))
        bind.execute(
            sa.text(
                "INSERT INTO scalar_series (session_id, tag, count, small_chunks, first_step, "
                "last_step, last_value, first_wall, last_wall, min_value, max_value, "
                "bucket_width, summary) VALUES (:session_id, :tag, :count, 0, :first_step, "
                ":last_step, :last_value, :first_wall, :last_wall, :min_value, :max_value, "
                ":bucket_width, :summary)"
            ),
            {
                "session_id": session_id, "tag": tag, "summary": summary.rows.astype("<f8").tobytes(),
                **{name: getattr(summary, name) for name in metrics.SERIES_COLUMNS},
            },
        )


def downgrade():
    op.create_table('scalars',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('wall_time', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('scalars', schema=None) as batch_op:
        batch_op.create_index('ix_scalars_session_tag_step', ['session_id', 'tag', 'step'], unique=False)
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('events_seq')
        batch_op.drop_column('events_stream')
    op.drop_table('scalar_series')
    with op.batch_alter_table('scalar_chunks', schema=None) as batch_op:
        batch_op.drop_index('ix_scalar_chunks_series')
    op.drop_table('scalar_chunks')
