"""competitions: accuracy_within's tolerance, and whether a round's opening and end were
announced; datasets for sessions only; a model submission's provenance

Revision ID: 0012_metric_tolerance
Revises: 0011_usage
Create Date: 2026-11-30 11:44:37.443896

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_metric_tolerance'
down_revision = '0011_usage'
branch_labels = None
depends_on = None


def upgrade():
    # In place: copying `rounds` (SQLite's batch mode) would delete its submissions.
    op.add_column('rounds', sa.Column('tolerance', sa.Float(), nullable=True))
    op.add_column('rounds', sa.Column('opened_told', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('rounds', sa.Column('ended_told', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('datasets', sa.Column('sessions_only', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('submissions', sa.Column('provenance', sa.JSON(), nullable=True))


def downgrade():
    for column in ('tolerance', 'opened_told', 'ended_told'):
        op.execute(f'ALTER TABLE rounds DROP COLUMN {column}')
    op.execute('ALTER TABLE datasets DROP COLUMN sessions_only')
    op.execute('ALTER TABLE submissions DROP COLUMN provenance')
