"""sessions may ask for a share of one GPU (thousandths of it, or some of its memory);
allocations hold thousandths of a GPU, several per GPU, so the unique key on (node, GPU)
gives way to an index and a lock taken by the scheduler

Revision ID: 0016_shared_gpus
Revises: 0015_migration_on_drain
Create Date: 2026-12-01 00:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016_shared_gpus'
down_revision = '0015_migration_on_drain'
branch_labels = None
depends_on = None


def _allocations(name, *, shares):
    columns = [
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('node_id', sa.Integer(), nullable=False),
        sa.Column('gpu_index', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    ]
    if shares:
        columns.append(sa.Column('milli', sa.Integer(), server_default='1000', nullable=False))
    else:
        columns.append(sa.UniqueConstraint('node_id', 'gpu_index'))
    op.create_table(name, *columns)


def _sqlite_replace_allocations(*, shares):
    # SQLite cannot drop an unnamed unique key in place: the table is made anew and its
    # rows copied (only active sessions' GPUs are in it; nothing refers to it).
    _allocations('allocations_next', shares=shares)
    kept = 'id, session_id, node_id, gpu_index'
    op.execute(f'INSERT INTO allocations_next ({kept}) SELECT {kept} FROM allocations')
    op.drop_index('ix_allocations_session_id', table_name='allocations')
    if not shares:
        op.drop_index('ix_allocations_gpu', table_name='allocations')
    op.drop_table('allocations')
    op.rename_table('allocations_next', 'allocations')
    op.create_index('ix_allocations_session_id', 'allocations', ['session_id'], unique=False)
    if shares:
        op.create_index('ix_allocations_gpu', 'allocations', ['node_id', 'gpu_index'], unique=False)


def upgrade():
    op.add_column('sessions', sa.Column('gpu_milli', sa.Integer(), server_default='0', nullable=False))
    op.add_column('sessions', sa.Column('gpu_memory_mb', sa.Integer(), server_default='0', nullable=False))
    if op.get_bind().dialect.name == 'sqlite':
        _sqlite_replace_allocations(shares=True)
        return
    # Elsewhere in place: the table keeps its ids, sequence and constraint names.
    op.drop_constraint('allocations_node_id_gpu_index_key', 'allocations', type_='unique')
    op.add_column('allocations', sa.Column('milli', sa.Integer(), server_default='1000', nullable=False))
    op.create_index('ix_allocations_gpu', 'allocations', ['node_id', 'gpu_index'], unique=False)


def downgrade():
    # Whole GPUs only: of the shares of a GPU, one row stays (the GPU is still held, and
    # not handed out twice); its other sharers hold nothing until they end.
    op.execute(
        'DELETE FROM allocations WHERE milli < 1000 AND id NOT IN '
        '(SELECT min(id) FROM allocations GROUP BY node_id, gpu_index)'
    )
    if op.get_bind().dialect.name == 'sqlite':
        _sqlite_replace_allocations(shares=False)
    else:
        op.drop_index('ix_allocations_gpu', table_name='allocations')
        op.drop_column('allocations', 'milli')
        op.create_unique_constraint(
            'allocations_node_id_gpu_index_key', 'allocations', ['node_id', 'gpu_index']
        )
    # Not batch_alter_table: on SQLite it recreates the table, and the rows that refer to
    # it would go with it.
    op.execute('ALTER TABLE sessions DROP COLUMN gpu_memory_mb')
    op.execute('ALTER TABLE sessions DROP COLUMN gpu_milli')
