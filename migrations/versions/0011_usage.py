"""monitoring, credits and alerts: resource use per session, the cluster over time, a
credit ledger drawn while sessions run, notifications

Revision ID: 0011_usage
Revises: 0010_round_inputs
Create Date: 2026-11-30 10:39:59.138254

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_usage'
down_revision = '0010_round_inputs'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('cluster_samples',
    sa.Column('at', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('gpus', sa.Integer(), nullable=False),
    sa.Column('gpus_allocated', sa.Integer(), nullable=False),
    sa.Column('gpus_reporting', sa.Integer(), nullable=False),
    sa.Column('gpus_busy', sa.Integer(), nullable=False),
    sa.Column('nodes_ready', sa.Integer(), nullable=False),
    sa.Column('nodes_drained', sa.Integer(), nullable=False),
    sa.Column('nodes_lost', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('at')
    )
    op.create_table('notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('link', sa.String(length=300), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('read_at', sa.DateTime(), nullable=True),
    sa.Column('email_state', sa.String(length=16), nullable=False),
    sa.Column('email_attempts', sa.Integer(), nullable=False),
    sa.Column('email_error', sa.Text(), nullable=False),
    sa.Column('emailed_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_email', ['email_state'], unique=False)
        batch_op.create_index('ix_notifications_user', ['user_id', 'id'], unique=False)

    op.create_table('credit_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.Float(), nullable=False),
    sa.Column('gpu_hours', sa.Float(), nullable=False),
    sa.Column('cpu_hours', sa.Float(), nullable=False),
    sa.Column('balance_after', sa.Float(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=True),
    sa.Column('session_ident', sa.String(length=160), nullable=False),
    sa.Column('competition_id', sa.Integer(), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('period_start', sa.DateTime(), nullable=True),
    sa.Column('period_end', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['competition_id'], ['competitions.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('credit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_credit_entries_session', ['session_id', 'id'], unique=False)
        batch_op.create_index('ix_credit_entries_user', ['user_id', 'id'], unique=False)

    op.create_table('user_usage',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('recent', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id')
    )
    op.create_table('session_usage',
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('gpu_samples', sa.Integer(), nullable=False),
    sa.Column('gpu_utilization_sum', sa.Float(), nullable=False),
    sa.Column('gpu_memory_peak_mb', sa.BigInteger(), nullable=False),
    sa.Column('cpu_percent_sum', sa.Float(), nullable=False),
    sa.Column('memory_peak_mb', sa.BigInteger(), nullable=False),
    sa.Column('last_second', sa.BigInteger(), nullable=False),
    sa.Column('last_sample_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_id')
    )
    # Columns are added in place: copying `sessions` (SQLite's batch mode) would delete,
    # by cascade, everything that refers to a session.
    op.add_column('sessions', sa.Column('stop_reason', sa.Text(), server_default='', nullable=False))
    op.add_column('sessions', sa.Column('saves_on_signal', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('sessions', sa.Column('stall_minutes', sa.Integer(), nullable=True))
    op.add_column('sessions', sa.Column('stalled_at', sa.DateTime(), nullable=True))
    op.add_column('sessions', sa.Column('charged_until', sa.DateTime(), nullable=True))
    op.add_column('sessions', sa.Column('credit_stop_at', sa.DateTime(), nullable=True))

    # Likewise in place: copying `users` would delete every session. Balances are kept: a credit buys a GPU-hour
    # at the default rates.
    op.execute('ALTER TABLE users RENAME COLUMN credit_gpu_hours TO credit')
    op.add_column('users', sa.Column('email_alerts', sa.Boolean(), server_default=sa.true(), nullable=False))



def downgrade():
    # In place (SQLite 3.35 and later drop columns): copying `users` or `sessions` would
    # delete, by cascade, what refers to them.
    op.execute('ALTER TABLE users DROP COLUMN email_alerts')
    op.execute('ALTER TABLE users RENAME COLUMN credit TO credit_gpu_hours')
    for column in ('credit_stop_at', 'charged_until', 'stalled_at', 'stall_minutes',
                   'saves_on_signal', 'stop_reason'):
        op.execute(f'ALTER TABLE sessions DROP COLUMN {column}')

    op.drop_table('session_usage')
    op.drop_table('user_usage')
    with op.batch_alter_table('credit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_credit_entries_user')
        batch_op.drop_index('ix_credit_entries_session')

    op.drop_table('credit_entries')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_user')
        batch_op.drop_index('ix_notifications_email')

    op.drop_table('notifications')
    op.drop_table('cluster_samples')
