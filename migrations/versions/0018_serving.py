"""serving (`podium serve`, `podium infer`): servers and their replica sessions; a
session's mode (train, serve, infer), its server, an infer session's input and
predictions, and when a replica was first ready

Revision ID: 0018_serving
Revises: 0017_searches
Create Date: 2026-12-01 03:41:57

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0018_serving'
down_revision = '0017_searches'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('servers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('source_session_id', sa.Integer(), nullable=True),
    sa.Column('checkpoint', sa.String(length=128), nullable=False),
    sa.Column('replicas', sa.Integer(), nullable=False),
    sa.Column('gpus', sa.Integer(), nullable=False),
    sa.Column('gpu_milli', sa.Integer(), nullable=False),
    sa.Column('timeout_s', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=False),
    sa.Column('restarts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['source_session_id'], ['sessions.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    # Not batch_alter_table: on SQLite it recreates the table, and the rows that refer to
    # it would go with it.
    op.add_column('sessions', sa.Column('mode', sa.String(length=8), server_default='train', nullable=False))
    op.add_column('sessions', sa.Column('server_id', sa.Integer(), nullable=True))
    op.add_column('sessions', sa.Column('input_digest', sa.String(length=64), server_default='', nullable=False))
    op.add_column('sessions', sa.Column('predictions_digest', sa.String(length=64), server_default='', nullable=False))
    op.add_column('sessions', sa.Column('served_since', sa.DateTime(), nullable=True))
    op.create_index('ix_sessions_server_id', 'sessions', ['server_id'], unique=False)


def downgrade():
    op.drop_index('ix_sessions_server_id', table_name='sessions')
    for column in ('served_since', 'predictions_digest', 'input_digest', 'server_id', 'mode'):
        op.execute(f'ALTER TABLE sessions DROP COLUMN {column}')
    op.drop_table('servers')
