"""metrics: a series' summary in blocks, so that a batch rewrites only its last rows

Revision ID: 0009_summary_blocks
Revises: 0008_metrics
Create Date: 2026-11-30 08:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_summary_blocks'
down_revision = '0008_metrics'
branch_labels = None
depends_on = None

# As they were when this revision was written: rows per block, bytes per row.
BLOCK_ROWS = 64
ROW_BYTES = 80


def upgrade():
    op.create_table('scalar_summary_blocks',
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.Column('block', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_id', 'tag', 'block')
    )
    with op.batch_alter_table('scalar_series', schema=None) as batch_op:
        batch_op.add_column(sa.Column('summary_blocks', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('summary_tail', sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    blocks = sa.table(
        'scalar_summary_blocks', sa.column('session_id'), sa.column('tag'), sa.column('block'),
        sa.column('data'),
    )
    for session_id, tag, summary in bind.execute(
        sa.text("SELECT session_id, tag, summary FROM scalar_series")
    ).all():
        summary = bytes(summary or b"")
        rows = len(summary) // ROW_BYTES
        full = max(rows - 1, 0) // BLOCK_ROWS  # the tail keeps at least the last row
        size = BLOCK_ROWS * ROW_BYTES
        if full:
            bind.execute(
                blocks.insert(),
                [
                    {"session_id": session_id, "tag": tag, "block": b,
                     "data": summary[b * size:(b + 1) * size]}
                    for b in range(full)
                ],
            )
        bind.execute(
            sa.text(
                "UPDATE scalar_series SET summary_blocks = :full, summary_tail = :tail "
                "WHERE session_id = :s AND tag = :t"
            ),
            {"full": full, "tail": summary[full * size:], "s": session_id, "t": tag},
        )
    with op.batch_alter_table('scalar_series', schema=None) as batch_op:
        batch_op.alter_column('summary_tail', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column('summary')


def downgrade():
    with op.batch_alter_table('scalar_series', schema=None) as batch_op:
        batch_op.add_column(sa.Column('summary', sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    for session_id, tag, tail in bind.execute(
        sa.text("SELECT session_id, tag, summary_tail FROM scalar_series")
    ).all():
        parts = bind.execute(
            sa.text(
                "SELECT data FROM scalar_summary_blocks WHERE session_id = :s AND tag = :t "
                "ORDER BY block"
            ),
            {"s": session_id, "t": tag},
        ).scalars().all()
        bind.execute(
            sa.text(
                "UPDATE scalar_series SET summary = :summary WHERE session_id = :s AND tag = :t"
            ),
            {"summary": b"".join(bytes(p) for p in parts) + bytes(tail), "s": session_id,
             "t": tag},
        )
    with op.batch_alter_table('scalar_series', schema=None) as batch_op:
        batch_op.alter_column('summary', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column('summary_tail')
        batch_op.drop_column('summary_blocks')
    op.drop_table('scalar_summary_blocks')
